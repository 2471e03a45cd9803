"""Classical detector of the shapes world: colour segmentation, connected components, geometry.

``detect(image)`` returns one ``Detection`` per object (shape, colour, size class, box in GoT
0–1000 units). It needs no model and runs in a few milliseconds per 128 px image, so it
serves both as the benchmark's judge and as an exact GRPO reward.

How it works
------------
1. **Foreground.** A pixel is foreground when its RGB distance to the world's background exceeds
   ``fg_threshold`` (the background is flat, so RGB is enough here and cheap).
2. **Components.** Foreground pixels are grouped into 8-connected components
   (``scipy.ndimage.label``); components smaller than ``min_area`` (a fraction of the image) are
   noise and dropped.
3. **Colour.** The pixels of a component are converted to CIE L*a*b* (D65, a perceptual space)
   and vote for their nearest palette colour (ΔE76). The palette holds each colour's fill *and*
   its texture tone (the fill mixed half-way with white, see
   ``reasongen.shapes.scene.texture_rgb``), both voting for the same colour name, so stripes and
   dots do not change the verdict (an interior with at least ``TEXTURE_MIN_SHARE`` of tone
   pixels is textured: ``striped`` if a tone patch spans ``STRIPE_EXTENT`` of the object, else
   ``dotted``). The rim (anti-aliased pixels, mixed with the background) does
   not vote. If a second colour holds at least ``split_fraction`` of the votes, the component is
   split by colour (two touching objects of different colours).
4. **Mask and box.** A pixel belongs to the object when its coverage — its position on the RGB
   segment from the background to the object's fill (or texture tone), where the renderer's
   anti-aliasing puts it — is at least one half; holes are filled. The box is the mask's bounding
   box in GoT units (pixel edges, ``x2`` exclusive); the size class comes from its longer side
   (the world's boxes are square; small and large sides do not overlap).
5. **Shape.** Rotation-tolerant geometric features of the mask — fill ratio (area / bounding box),
   solidity (area / convex hull area), circularity of the hull (4π·A/P²), the vertical offset of the
   centroid, the number of corners of the hull after polygon simplification, and up-down symmetry
   (IoU of the mask with its flipped copy: stars and triangles are not symmetric) — are compared to
   one prototype per shape (measured on clean renders) with a scaled nearest-neighbour rule. The
   margin between the best and second-best prototype gives ``Detection.score``.
6. **Rejection.** What is not a clean shape is dropped, not forced into the nearest prototype: a
   box side over ``max_side`` of the image (flat, split or graded backdrops), a mask whose own
   pixels leave over ``max_holes`` of it uncovered or whose solidity is under ``min_solidity``
   (speckle), an interior rougher than ``max_roughness`` (noise) and an outline less steep than
   ``min_edge_steepness`` (blurred blobs). On ``benchmarks/detector_junk.py`` (six kinds of junk
   x 300 benchmark prompts) 3 of 1800 pass (before: 70); clean renders and the shipped models'
   verdicts are unchanged but for one junk blob.

Measured (seeded scenes of all six categories): every object found with its shape, colour and
size class and nothing else on 2400/2400 clean 128 px renders of free layouts (tested on 300 in
``tests/reasongen/shapes/test_detect.py``) and on 600/600 cell-aligned layouts (the embedded
model's) at 64 and at 128 px (tested on 150 each); textures right on every object; ≥ 97 % after a
Gaussian blur of 1 px, JPEG quality 40 or a round trip through half resolution (tested), 100 %
with i.i.d. pixel noise up to σ = 12 per channel. About 3 ms of CPU per image.

Known failure modes
-------------------
- **Touching or overlapping objects of the same colour** merge into one component: one detection
  (usually an odd shape) instead of two. Different colours are split, but the split masks of
  overlapping objects are occluded, so their shapes may be misread.
- **Tiny objects**: shapes are read reliably from about 11 px across (90 GoT units at 128 px);
  at 9 px one in ten is misread, at 6 px most are; below ``min_area`` they are dropped.
- **Textures**: the texture tone of one colour can be close to another colour (the red texture
  lies 30 ΔE from the pink texture); a heavily textured object, or one drawn by a model in a
  texture tone only, can get the wrong colour. Texture classification needs a clean, sharp
  pattern: blurred stripes or dots read as plain, merged dots as stripes.
- **VQ / model artefacts**: blurred edges shift the mask by about a pixel (boxes off by ~8 units);
  colour bleeding between neighbours, a stray blotch larger than ``min_area`` (33 px at 128 px)
  or a background tinted beyond ``fg_threshold`` give extra detections; strong noise
  (σ ≥ 14 per channel) breaks pink first, the colour nearest the background; wobbly outlines
  can turn squares into circles or diamonds into crosses (corner count and circularity are the
  most fragile features, hence their small weight).
- **Shapes outside the vocabulary** that are solid, flat and sharp (a rectangle, an irregular but
  crisp patch) are still forced into the nearest known shape (``Detection.score`` is then low);
  colours outside the palette go to the nearest palette colour. Blurred blobs, noise, speckle and
  backdrops are rejected (step 6), but a crisp multi-coloured blob is split by colour and each
  piece is still read as some shape. Objects blurred beyond a Gaussian of about 2 px (at 128 px)
  are rejected too, true shapes included.
- **Rotated shapes**: the features are rotation tolerant except square vs diamond (the same
  polygon turned by 45°) and the up-down asymmetry of triangles and stars (pointing up in renders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from reasongen.types import COORD_MAX, Box

from .scene import BACKGROUND, COLORS, SIZES, size_threshold_for

# --------------------------------------------------------------------------- colour space


_SRGB_LINEAR = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in np.arange(256) / 255.0],
    dtype=np.float32,
)  # [256] sRGB byte → linear light
_XYZ = (
    np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
        dtype=np.float32,
    )
    / np.array([[0.95047], [1.0], [1.08883]], dtype=np.float32)
).T  # [3, 3] linear RGB → XYZ relative to the D65 white


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0–255, any leading shape, last axis 3) → CIE L*a*b* under D65, float32."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        lin = _SRGB_LINEAR[arr]  # [..., 3]
    else:
        c = np.clip(arr.astype(np.float32) / 255.0, 0.0, 1.0)
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin.astype(np.float32) @ _XYZ  # [..., 3]
    eps, kappa = 216.0 / 24389.0, 24389.0 / 27.0
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16.0) / 116.0)  # [..., 3]
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


# --------------------------------------------------------------------------- shape prototypes

FEATURES = ("fill", "solidity", "circularity", "centroid_dy", "corners", "vsym")
"""Feature names, in the order of ``ShapeFeatures.vector``."""

PROTOTYPES: dict[str, tuple[float, float, float, float, float, float]] = {
    "circle": (0.78, 0.98, 0.99, 0.0, 8.0, 0.98),
    "square": (1.0, 1.0, 0.80, 0.0, 4.0, 1.0),
    "triangle": (0.52, 0.97, 0.64, 0.16, 3.0, 0.36),
    "diamond": (0.515, 0.975, 0.81, 0.0, 4.0, 0.98),
    "star": (0.39, 0.56, 0.87, 0.05, 5.0, 0.44),
    "cross": (0.60, 0.76, 0.947, 0.0, 8.0, 0.98),
}
"""Feature values of each shape on clean renders (see ``FEATURES``); measured, then rounded."""

FEATURE_SCALE = (0.08, 0.08, 0.05, 0.05, 2.0, 0.1)
"""How much of each feature counts as one unit of distance in the nearest-prototype rule (about
the spread a blur of one pixel or strong JPEG compression causes)."""

CORNER_CAP = 1.0
"""Largest distance a corner-count difference may add: counts are the most fragile feature."""


@dataclass(frozen=True)
class ShapeFeatures:
    """Geometric features of one object's mask (see the module docstring)."""

    fill: float
    solidity: float
    circularity: float
    centroid_dy: float
    corners: int
    vsym: float
    """IoU of the mask with its upside-down copy (1 for up-down symmetric shapes)."""

    @property
    def vector(self) -> np.ndarray:
        return np.array(
            [self.fill, self.solidity, self.circularity, self.centroid_dy, self.corners, self.vsym],
            dtype=np.float64,
        )


TEXTURE_MIN_SHARE = 0.08
"""An object is textured when this share of its interior is in its colour's texture tone."""
STRIPE_EXTENT = 0.28
"""A texture patch this long (fraction of the object's side) is a stripe; dots stay near 0.15."""

# --------------------------------------------------------------------------- config and output


@dataclass(frozen=True)
class DetectorConfig:
    """Detector settings. The defaults fit the shapes world's renders and its VQ reconstructions."""

    colors: Mapping[str, tuple[int, int, int]] = field(
        default_factory=lambda: dict(COLORS),
        metadata={"help": "Colour name → fill RGB (the world's palette)."},
    )
    background: tuple[int, int, int] = field(default=BACKGROUND, metadata={"help": "Background RGB."})
    texture_tones: bool = field(
        default=True,
        metadata={"help": "Also match each colour's texture tone (fill mixed half-way with white)."},
    )
    fg_threshold: float = field(
        default=24.0,
        metadata={
            "help": "RGB distance (0–255 units) from the background above which a pixel "
            "is foreground (the palette's nearest texture tone lies 55 away)."
        },
    )
    min_area: float = field(
        default=0.002,
        metadata={"help": "Smallest object, as a fraction of the image area (smaller = noise)."},
    )
    split_fraction: float = field(
        default=0.2,
        metadata={"help": "Share of votes a second colour needs for a component to be split."},
    )
    size_threshold: int = field(
        default_factory=size_threshold_for,
        metadata={"help": "Box side (GoT units) from which an object is 'large' rather than "
                  "'small' (default: size_threshold_for(), right for both layouts)."},
    )  # fmt: skip

    max_side: float = field(
        default=0.6,
        metadata={"help": "Largest box side of an object, as a fraction of the image side (the "
                  "world's largest is 0.4): a larger region is a flat, split or graded backdrop."},
    )  # fmt: skip
    min_edge_steepness: float = field(
        default=0.2,
        metadata={"help": "Smallest slope across an object's outline, as a share of its contrast "
                  "to the background per pixel (per 1/128 of the side in larger images): renders "
                  "≈ 0.5, VQ outputs ≥ 0.3, a Gaussian blur of sigma pixels ≈ 0.4 / sigma, so "
                  "blurred blobs fall below."},
    )  # fmt: skip
    max_roughness: float = field(
        default=25.0,
        metadata={"help": "Largest median ΔE between neighbouring pixels inside an object "
                  "(flat fills ≈ 0, smooth colour gradients a few units, pixel noise more)."},
    )  # fmt: skip
    min_solidity: float = field(
        default=0.5,
        metadata={"help": "Smallest solidity (area / convex hull area) of an object; the world's "
                  "least solid shape, the star, has 0.56 (scattered speckle far less)."},
    )  # fmt: skip
    max_holes: float = field(
        default=0.1,
        metadata={"help": "Largest share of an object's filled mask that its own pixels leave "
                  "uncovered (scattered speckle encloses much background)."},
    )  # fmt: skip

    max_objects: int = field(
        default=32,
        metadata={"help": "At most this many detections, largest components first (bounds the "
                  "time spent on images that are not from the shapes world)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be at least 1, got {self.max_objects}")
        if not self.colors:
            raise ValueError("DetectorConfig.colors must name at least one colour")
        for name, rgb in self.colors.items():
            if len(rgb) != 3 or not all(0 <= int(v) <= 255 for v in rgb):
                raise ValueError(f"colour {name!r} must be an RGB triple in 0–255, got {rgb!r}")
        if not self.fg_threshold > 0:
            raise ValueError(f"fg_threshold must be > 0 (RGB units), got {self.fg_threshold}")
        if not 0 < self.min_area < 0.5:
            raise ValueError(f"min_area is a fraction of the image in (0, 0.5), got {self.min_area}")
        if not 0 < self.split_fraction <= 0.5:
            raise ValueError(f"split_fraction must be in (0, 0.5], got {self.split_fraction}")
        if not 0 < self.size_threshold < COORD_MAX:
            raise ValueError(f"size_threshold must be in (0, {COORD_MAX}), got {self.size_threshold}")
        if not 0 < self.max_side <= 1:
            raise ValueError(f"max_side is a fraction of the image side in (0, 1], got {self.max_side}")
        if not self.min_edge_steepness >= 0:
            raise ValueError(f"min_edge_steepness must be >= 0, got {self.min_edge_steepness}")
        if not self.max_roughness > 0:
            raise ValueError(f"max_roughness must be > 0 (ΔE), got {self.max_roughness}")
        if not 0 <= self.max_holes <= 1 or not 0 <= self.min_solidity <= 1:
            raise ValueError(f"max_holes and min_solidity are shares in [0, 1], got "
                             f"{self.max_holes} and {self.min_solidity}")  # fmt: skip


@dataclass(frozen=True)
class Detection:
    """One detected object. ``box`` is in GoT units, labelled ``"<color> <shape>"``."""

    shape: str
    color: str
    size: str
    box: Box
    area: float
    """Fraction of the image covered by the object's mask."""
    score: float
    """Confidence in (0, 1]: how clearly the shape prototype won (1 = unambiguous)."""
    texture: str | None = None
    """``"striped"``, ``"dotted"`` (long vs. compact patches of the texture tone) or None."""
    features: ShapeFeatures | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def center(self) -> tuple[float, float]:
        return self.box.center

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "box": [self.box.x1, self.box.y1, self.box.x2, self.box.y2],
            "area": round(self.area, 5),
            "score": round(self.score, 4),
            "texture": self.texture,
        }


DEFAULT_CONFIG = DetectorConfig()


# --------------------------------------------------------------------------- geometry


def _rdp_count(points: np.ndarray, tol: float) -> int:
    """Corners left after Ramer–Douglas–Peucker simplification of a closed polygon ``[N, 2]``."""
    n = len(points)
    if n <= 3:
        return n
    # Split the closed ring at its two mutually farthest vertices, simplify both chains.
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)  # [N, N]
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    i, j = min(i, j), max(i, j)
    ring = np.concatenate([points, points[:1]])
    chains = (ring[i : j + 1], np.concatenate([ring[j:], ring[1 : i + 1]]))
    return sum(_rdp_chain(c, tol) - 1 for c in chains)


def _rdp_chain(chain: np.ndarray, tol: float) -> int:
    """Number of vertices RDP keeps on an open chain ``[N, 2]`` (both ends included)."""
    if len(chain) <= 2:
        return len(chain)
    a, b = chain[0], chain[-1]
    ab = b - a
    norm = float(np.hypot(*ab))
    rel = chain[1:-1] - a  # [N-2, 2]
    if norm < 1e-9:
        dist = np.hypot(rel[:, 0], rel[:, 1])
    else:
        dist = np.abs(ab[0] * rel[:, 1] - ab[1] * rel[:, 0]) / norm
    k = int(np.argmax(dist))
    if dist[k] <= tol:
        return 2
    k += 1
    return _rdp_chain(chain[: k + 1], tol) + _rdp_chain(chain[k:], tol) - 1


def shape_features(mask: np.ndarray) -> ShapeFeatures:
    """Geometric features of a filled binary object mask ``[H, W]`` (at least a few pixels)."""
    rows, cols = np.nonzero(mask)
    area = float(len(rows))
    if area < 3:
        raise ValueError("shape_features needs a mask of at least 3 pixels")
    h = float(rows.max() - rows.min() + 1)
    w = float(cols.max() - cols.min() + 1)
    edge = mask & ~ndimage.binary_erosion(mask)
    er, ec = np.nonzero(edge)
    pts = np.stack([ec, er], axis=1).astype(np.float64)  # [E, 2] pixel centres (x, y)
    try:
        hull = ConvexHull(pts)
        verts = pts[hull.vertices]  # [V, 2], counter-clockwise
        # Hull of pixel centres grown by half a pixel (Minkowski sum with a disc of radius 0.5).
        hull_area = hull.volume + 0.5 * hull.area + np.pi * 0.25
        hull_perim = hull.area + np.pi
    except (QhullError, ValueError):  # all points on a line: a 1-pixel-thin object
        verts = pts
        hull_area, hull_perim = area, 2.0 * (h + w)
    fill = area / (h * w)
    solidity = min(1.0, area / hull_area)
    circularity = min(1.0, 4.0 * np.pi * hull_area / hull_perim**2)
    centroid_dy = (float(rows.mean()) - (rows.min() + rows.max()) / 2.0) / h
    corners = _rdp_count(verts, tol=0.06 * max(h, w))
    crop = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    vsym = float((crop & crop[::-1]).sum()) / float((crop | crop[::-1]).sum())
    return ShapeFeatures(fill, solidity, circularity, centroid_dy, corners, vsym)


def classify_shape(features: ShapeFeatures) -> tuple[str, float]:
    """Nearest shape prototype and a confidence in (0, 1] (1 − best / second-best distance)."""
    names = list(PROTOTYPES)
    protos = np.array([PROTOTYPES[n] for n in names], dtype=np.float64)  # [S, F]
    diff = (protos - features.vector) / np.array(FEATURE_SCALE)  # [S, F]
    diff[:, 4] = np.minimum(np.abs(diff[:, 4]), CORNER_CAP)  # corner counts: a capped vote
    dist = np.sqrt((diff**2).sum(axis=1))  # [S]
    order = np.argsort(dist)
    best, second = float(dist[order[0]]), float(dist[order[1]])
    return names[int(order[0])], 1.0 - best / max(second, 1e-9)


# --------------------------------------------------------------------------- the detector


def _as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an ``[H, W, 3]`` array (uint8 0–255, or float 0–1) → uint8 ``[H, W, 3]``."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 4:
        raise ValueError(f"expected an RGB image [H, W, 3] of at least 4x4 pixels, got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if float(arr.max(initial=0.0)) <= 1.0:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


class Detector:
    """A detector with its palette prepared once; ``detector(image)`` → list of ``Detection``."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DEFAULT_CONFIG
        cfg = self.config
        self.color_names = list(cfg.colors)
        fills = [tuple(int(v) for v in cfg.colors[n]) for n in self.color_names]
        tones = (
            [tuple((int(v) + 255) // 2 for v in cfg.colors[n]) for n in self.color_names]
            if cfg.texture_tones
            else []
        )
        entries = fills + tones
        self._entry_rgb = np.array(entries, dtype=np.float32)  # [K, 3]
        self._entry_lab = srgb_to_lab(self._entry_rgb)  # [K, 3]
        self._entry_color = np.array(
            list(range(len(fills))) + list(range(len(tones))), dtype=np.int64
        )  # [K] palette entry → colour index
        self._bg_rgb = np.array(cfg.background, dtype=np.float32)  # [3]

    def __call__(self, image: Image.Image | np.ndarray) -> list[Detection]:
        return self.detect(image)

    def detect(self, image: Image.Image | np.ndarray) -> list[Detection]:
        """All objects in ``image``, sorted top-to-bottom then left-to-right."""
        rgb8 = _as_rgb(image)  # [H, W, 3] uint8
        height, width = rgb8.shape[:2]
        rgb = rgb8.astype(np.float32)  # [H, W, 3]
        diff = rgb - self._bg_rgb  # [H, W, 3]
        bg_dist = np.sqrt(np.einsum("hwc,hwc->hw", diff, diff))  # [H, W] RGB distance to bg
        fg = bg_dist > self.config.fg_threshold  # [H, W]
        labels, n = ndimage.label(fg, structure=np.ones((3, 3)))
        min_px = max(4.0, self.config.min_area * height * width)
        sizes = ndimage.sum_labels(fg, labels, np.arange(1, n + 1))  # [n] pixels per component
        slices = ndimage.find_objects(labels)
        out: list[Detection] = []
        for k in np.argsort(-sizes, kind="stable"):  # largest first, so a cap keeps the objects
            if sizes[k] < min_px or len(out) >= self.config.max_objects:
                break
            sl = slices[k]
            comp = labels[sl] == k + 1  # [h, w]
            lab = srgb_to_lab(rgb8[sl])  # [h, w, 3], only where an object is
            for color, region, r_sl in self._split_by_color(comp, lab, min_px):
                g_sl = (_offset(sl[0], r_sl[0]), _offset(sl[1], r_sl[1]))
                det = self._make_detection(region, color, rgb[g_sl], lab[r_sl], g_sl,
                                           (height, width), min_px, bg_dist)  # fmt: skip
                if det is not None and len(out) < self.config.max_objects:
                    out.append(det)
        out.sort(key=lambda d: (d.box.y1, d.box.x1))
        return out

    def _nearest_color(self, lab_pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour index and palette entry index of the nearest entry, for ``[P, 3]`` L*a*b*."""
        e = self._entry_lab  # [K, 3]
        d2 = (e * e).sum(axis=1)[None, :] - 2.0 * (lab_pixels @ e.T)  # [P, K] (+|x|², constant)
        entry = d2.argmin(axis=1)  # [P]
        return self._entry_color[entry], entry

    def _split_by_color(
        self, comp: np.ndarray, lab: np.ndarray, min_px: float
    ) -> list[tuple[int, np.ndarray, tuple[slice, slice]]]:
        """``(colour index, region mask, its slice of comp)`` of one component: one, or one per
        colour patch when a second colour holds ``split_fraction`` of the votes."""
        whole = (slice(0, comp.shape[0]), slice(0, comp.shape[1]))
        core = ndimage.binary_erosion(comp)
        if core.sum() < max(4, 0.2 * comp.sum()):
            core = comp
        color_of_core, _ = self._nearest_color(lab[core])
        votes = np.bincount(color_of_core, minlength=len(self.color_names))
        order = np.argsort(-votes)
        total = float(votes.sum())
        major = [int(c) for c in order if votes[c] >= self.config.split_fraction * total]
        if len(major) <= 1:
            return [(int(order[0]), comp, whole)]
        color_map = np.full(comp.shape, -1, dtype=np.int64)
        color_map[comp], _ = self._nearest_color(lab[comp])
        regions: list[tuple[int, np.ndarray, tuple[slice, slice]]] = []
        for c in major:
            sub, _ = ndimage.label(ndimage.binary_opening(color_map == c), structure=np.ones((3, 3)))
            for j, (rs, cs) in enumerate(ndimage.find_objects(sub), start=1):
                if len(regions) >= self.config.max_objects:
                    break
                # Grow the patch by one pixel (opening shaved its rim) inside its own box.
                h, w = comp.shape
                box = (slice(max(rs.start - 1, 0), min(rs.stop + 1, h)),
                       slice(max(cs.start - 1, 0), min(cs.stop + 1, w)))  # fmt: skip
                part = sub[box] == j
                if part.sum() >= min_px:
                    regions.append((c, ndimage.binary_dilation(part) & comp[box], box))
        return regions or [(int(order[0]), comp, whole)]

    def _make_detection(
        self,
        region: np.ndarray,
        color: int,
        rgb: np.ndarray,
        lab: np.ndarray,
        sl: tuple[slice, slice],
        image_hw: tuple[int, int],
        min_px: float,
        bg_dist: np.ndarray,
    ) -> Detection | None:
        """The object of colour ``color`` inside ``region`` (crop coordinates), or None if tiny
        or not a clean shape (``_is_clean_shape``, or less solid than ``min_solidity``);
        ``bg_dist`` is the whole image's ``[H, W]`` RGB distance to the background."""
        fill = self._entry_rgb[color]  # [3]
        n_colors = len(self.color_names)
        has_tone = len(self._entry_rgb) > n_colors
        rel = rgb - self._bg_rgb  # [h, w, 3]
        own = _coverage(rel, fill - self._bg_rgb) >= 0.5  # [h, w]
        if has_tone:
            own |= _coverage(rel, self._entry_rgb[n_colors + color] - self._bg_rgb) >= 0.5
        own &= region
        mask = ndimage.binary_fill_holes(own)
        if mask.sum() < min_px:
            return None
        if not self._is_clean_shape(mask, own, lab, bg_dist, sl):
            return None
        texture = self._texture(mask, lab, color) if has_tone else None
        feats = shape_features(mask)
        if feats.solidity < self.config.min_solidity:
            return None
        shape, score = classify_shape(feats)
        rows, cols = np.nonzero(mask)
        height, width = image_hw
        r0, c0 = sl[0].start, sl[1].start
        box = Box(
            f"{self.color_names[color]} {shape}",
            round((c0 + cols.min()) * COORD_MAX / width),
            round((r0 + rows.min()) * COORD_MAX / height),
            round((c0 + cols.max() + 1) * COORD_MAX / width),
            round((r0 + rows.max() + 1) * COORD_MAX / height),
        )
        side = max(box.x2 - box.x1, box.y2 - box.y1)
        size = SIZES[-1] if side >= self.config.size_threshold else SIZES[0]
        return Detection(
            shape=shape,
            color=self.color_names[color],
            size=size,
            box=box,
            area=float(mask.sum()) / (height * width),
            score=score,
            texture=texture,
            features=feats,
        )

    def _is_clean_shape(
        self,
        mask: np.ndarray,
        own: np.ndarray,
        lab: np.ndarray,
        bg_dist: np.ndarray,
        sl: tuple[slice, slice],
    ) -> bool:
        """Whether the object reads as a drawn shape, not junk a shape was forced onto.

        ``mask``: the filled object mask; ``own``: its pixels of the object's colour (before
        filling holes); ``lab``: the pixels in L*a*b*; all crops ``[h, w(, 3)]`` at ``sl`` of the
        image, whose ``[H, W]`` RGB distances to the background are ``bg_dist``. Rejected: a box
        side above ``max_side`` of the image (flat, split or graded backdrops), more than
        ``max_holes`` of the mask not the object's own colour (speckle), an interior whose
        neighbouring pixels differ by more than ``max_roughness`` (noise), and an outline less
        steep than ``min_edge_steepness`` (blurred blobs).
        """
        cfg = self.config
        height, width = bg_dist.shape
        rows, cols = np.nonzero(mask)
        if max(np.ptp(rows) + 1, np.ptp(cols) + 1) > cfg.max_side * max(height, width):
            return False
        if 1.0 - own.sum() / float(mask.sum()) > cfg.max_holes:
            return False
        inner = ndimage.binary_erosion(mask)
        steps = np.concatenate(
            [
                np.linalg.norm(np.diff(lab, axis=0), axis=-1)[inner[1:] & inner[:-1]],
                np.linalg.norm(np.diff(lab, axis=1), axis=-1)[inner[:, 1:] & inner[:, :-1]],
            ]
        )  # [P]: ΔE between vertical and horizontal neighbours inside
        if steps.size >= 8 and float(np.median(steps)) > cfg.max_roughness:
            return False
        # Edge steepness: the median slope of the distance to the background across the
        # outline, over the object's own distance (a sharp edge ≈ 0.5, a blur of sigma px ≈ 0.4 /
        # sigma), in pixels of the image or of 128 px if larger. It reads the whole image around
        # the object, not only the crop.
        top, left = sl[0].start + rows.min(), sl[1].start + cols.min()
        bottom, right = sl[0].start + rows.max() + 1, sl[1].start + cols.max() + 1
        near = bg_dist[max(top - 1, 0) : bottom + 1, max(left - 1, 0) : right + 1]
        pads = ((int(top == 0), int(bottom == height)), (int(left == 0), int(right == width)))
        dist = np.pad(near, pads, mode="edge")  # [h+2, w+2]: the box and a 1 px ring around it
        win = np.zeros(dist.shape, dtype=bool)
        win[1:-1, 1:-1] = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        core = ndimage.binary_erosion(win)
        level = float(np.median(dist[core] if core.any() else dist[win]))
        grad_r, grad_c = np.gradient(dist)  # [h+2, w+2] each
        slope = float(np.median(np.hypot(grad_r, grad_c)[win & ~core]))
        scale = max(1.0, max(height, width) / 128.0)  # an upscaled image has gentler slopes
        return slope * scale >= cfg.min_edge_steepness * max(level, 1e-6)

    def _texture(self, mask: np.ndarray, lab: np.ndarray, color: int) -> str | None:
        """Texture of an object: its interior's texture-tone pixels, as stripes or dots."""
        core = ndimage.binary_erosion(mask, iterations=2)  # away from the anti-aliased rim
        if core.sum() < 8:
            return None
        _, entry = self._nearest_color(lab[core])
        tone = np.zeros_like(core)
        tone[core] = entry == len(self.color_names) + color
        if tone.sum() < TEXTURE_MIN_SHARE * core.sum():
            return None
        lbl, _ = ndimage.label(tone, structure=np.ones((3, 3)))
        longest = max(max(r.stop - r.start, c.stop - c.start) for r, c in ndimage.find_objects(lbl))
        rows, cols = np.nonzero(mask)
        side = max(np.ptp(rows), np.ptp(cols)) + 1
        return "striped" if longest >= STRIPE_EXTENT * side else "dotted"


def _offset(outer: slice, inner: slice) -> slice:
    """``inner`` (relative to the crop ``outer``) in whole-image coordinates."""
    return slice(outer.start + inner.start, outer.start + inner.stop)


def _coverage(rel: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """How far each pixel ``rel = p − background`` lies along ``direction`` (0 = bg, 1 = colour)."""
    return (rel @ direction) / max(float(direction @ direction), 1e-6)  # [h, w]


_DEFAULT_DETECTOR: Detector | None = None


def detect(image: Image.Image | np.ndarray, config: DetectorConfig | None = None) -> list[Detection]:
    """Detect the objects of one image (see the module docstring); default world settings."""
    global _DEFAULT_DETECTOR
    if config is not None:
        return Detector(config).detect(image)
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = Detector()
    return _DEFAULT_DETECTOR.detect(image)


# --------------------------------------------------------------------------- agreement with scenes


def matches_objects(
    detections: Sequence[Any],
    objects: Sequence[Any],
    min_iou: float = 0.5,
    attrs: Sequence[str] = ("shape", "color"),
) -> bool:
    """True when detections and ground-truth objects (anything with ``box`` and the ``attrs``)
    pair up one-to-one (optimal matching on box IoU, ≥ ``min_iou``) with equal ``attrs`` (shape and
    colour by default), and nothing is left over on either side."""
    from reasongen.plans import match_boxes

    if len(detections) != len(objects):
        return False
    if not objects:
        return True
    pairs = match_boxes([o.box for o in objects], [d.box for d in detections])
    if len(pairs) != len(objects):
        return False
    return all(
        iou >= min_iou and all(getattr(detections[j], a) == getattr(objects[i], a) for a in attrs)
        for i, j, iou in pairs
    )


def detector_agreement(
    images: Sequence[Image.Image | np.ndarray],
    scenes: Sequence[Any],
    min_iou: float = 0.5,
    config: DetectorConfig | None = None,
) -> float:
    """Fraction of images whose detections match their scene's objects exactly
    (``matches_objects``); e.g. VQ reconstructions against the scenes they encode."""
    if len(images) != len(scenes):
        raise ValueError(f"got {len(images)} images but {len(scenes)} scenes; pass one per image")
    if not images:
        raise ValueError("detector_agreement needs at least one image")
    det = Detector(config)
    hits = sum(matches_objects(det(img), sc.objects, min_iou) for img, sc in zip(images, scenes))
    return hits / len(images)
