"""The reward contract: outputs, configs, lazy model loading and the clear offline error.

A reward is a picklable callable ``reward(samples, metadata=None) -> RewardOutput``. ``metadata``
(one GenEval-shaped dict or ``None`` per sample) defaults to each sample's own ``.metadata``.
Model-backed rewards load their model on first call, once, and drop it when pickled, so a reward
can be built cheaply, shipped to worker processes and loaded where it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar, get_type_hints

from ..devices import DTYPES, resolve_device, resolve_dtype
from ..types import Sample, validate_metadata

T = TypeVar("T")

MAX_IMAGE_ASPECT = 200.0
"""Longest over shortest image side beyond which no reward scores an image (Qwen2.5-VL's processor
refuses more, and resizing such a sliver to a model's input size leaves a side of zero pixels)."""


class RewardModelUnavailable(RuntimeError):
    """A reward model's weights could not be loaded (offline, wrong path, missing file)."""


@dataclass
class RewardOutput:
    """One score per sample (``None`` where the reward does not apply) plus display details."""

    name: str
    scores: list[float | None]
    details: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.details):
            raise ValueError(
                f"reward {self.name!r}: {len(self.scores)} scores but {len(self.details)} details"
            )

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class RewardConfig:
    """Settings every reward accepts."""

    def __post_init__(self) -> None:  # subclasses extend
        pass

    @classmethod
    def from_kwargs(cls: type[T], **kwargs: Any) -> T:
        """Build from keyword arguments, naming the unknown ones and the accepted ones, and
        refusing a value of the wrong kind for a bool, int, float or str option (``"maybe"`` for
        a bool, ``True`` for a number)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(known))}"
            )
        hints = get_type_hints(cls)
        for name, value in kwargs.items():
            kinds = _SIMPLE_KINDS.get(hints.get(name))
            if kinds is not None and (
                not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))
            ):
                want = hints[name].__name__
                raise ValueError(f"{cls.__name__}.{name} expects {want}, got {value!r}")
        return cls(**kwargs)


_SIMPLE_KINDS: dict[Any, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
"""Option type → the Python types accepted for it (an int is a valid float; a bool is neither)."""


@dataclass
class ModelRewardConfig(RewardConfig):
    """Settings of a reward backed by a neural model."""

    model: str = field(default="", metadata={"help": "Hub id or local folder/file of the weights."})
    device: str = field(
        default="auto",
        metadata={"help": "'auto' (CUDA if available, else CPU), 'cpu', 'cuda:0'..."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "'auto' (bfloat16 on CUDA, float32 on CPU), 'float32', 'bfloat16', 'float16'."},
    )
    batch_size: int = field(default=8, metadata={"help": "Images per forward pass."})
    local_files_only: bool = field(
        default=False,
        metadata={"help": "Never contact the hub, even when HF_HUB_OFFLINE is unset."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ValueError(f"{type(self).__name__}.model is empty: give a hub id or a local path")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}; got {self.dtype!r}")

    def torch_device(self) -> Any:
        """The configured device as a ``torch.device`` ('auto' picks CUDA when present)."""
        return resolve_device(self.device)

    def torch_dtype(self) -> Any:
        """The configured dtype as a ``torch.dtype`` ('auto': bfloat16 on CUDA, float32 on CPU)."""
        return resolve_dtype(self.dtype, self.torch_device())


class Reward:
    """Base class: validates input, resolves metadata, calls :meth:`score`.

    Subclasses set ``name`` and ``config_class`` and implement ``score``. A sample whose image
    this reward cannot score (:meth:`image_problem`) never reaches ``score``: it gets ``None``
    with ``{"error": reason}`` as details, and the rest of the batch is scored as usual.
    """

    name: ClassVar[str] = "reward"
    config_class: ClassVar[type[RewardConfig]] = RewardConfig
    min_image_side: ClassVar[int] = 1
    """Fewest pixels an image side may have for this reward to score it."""

    def __init__(self, config: RewardConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class.from_kwargs(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def __call__(
        self, samples: Sequence[Sample], metadata: Sequence[dict[str, Any] | None] | None = None
    ) -> RewardOutput:
        samples = list(samples)
        metas = resolve_metadata(samples, metadata)
        if not samples:
            return RewardOutput(self.name, [], [])
        problems = [self.image_problem(getattr(s, "image", None)) for s in samples]
        ok = [i for i, p in enumerate(problems) if p is None]
        out = (
            self.score([samples[i] for i in ok], [metas[i] for i in ok])
            if ok
            else RewardOutput(self.name, [], [])
        )
        if len(out) != len(ok):
            raise RuntimeError(f"reward {self.name!r} returned {len(out)} scores for {len(ok)}")
        if len(ok) == len(samples):
            return out
        scores: list[float | None] = [None] * len(samples)
        details: list[dict[str, Any]] = [{"error": p} for p in problems]
        for j, i in enumerate(ok):
            scores[i], details[i] = out.scores[j], out.details[j]
        return RewardOutput(out.name, scores, details)

    def image_problem(self, image: Any) -> str | None:
        """Why this reward cannot score ``image`` (empty, thinner than ``min_image_side``, longer
        than ``MAX_IMAGE_ASPECT`` times its width), or ``None`` if it can. A missing image
        (``None``) is no problem here: each reward says itself how it treats one."""
        if image is None:
            return None
        size = getattr(image, "size", None)
        if not (isinstance(size, tuple) and len(size) == 2):
            return f"not an image ({type(image).__name__})"
        w, h = size
        if min(w, h) < self.min_image_side:
            return f"image is {w}x{h} pixels; {self.name} needs at least {self.min_image_side} a side"
        if max(w, h) > MAX_IMAGE_ASPECT * min(w, h):
            return f"image is {w}x{h} pixels: sides further apart than {MAX_IMAGE_ASPECT:g}:1"
        return None

    def score(self, samples: list[Sample], metas: list[dict[str, Any] | None]) -> RewardOutput:
        raise NotImplementedError


class ModelReward(Reward):
    """A reward whose model loads lazily (first call), once, and is never pickled."""

    config: ModelRewardConfig

    def __init__(self, config: RewardConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._bundle: Any = None
        self._lock = threading.Lock()
        self.load_count = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_bundle"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._bundle is not None

    @property
    def bundle(self) -> Any:
        """The loaded model objects (loads them on first access)."""
        if self._bundle is None:
            with self._lock:
                if self._bundle is None:
                    self._bundle = self.load()
                    self.load_count += 1
        return self._bundle

    def load(self) -> Any:
        """Load and return the model objects; called once."""
        raise NotImplementedError


def resolve_metadata(
    samples: Sequence[Sample], metadata: Sequence[dict[str, Any] | None] | None
) -> list[dict[str, Any] | None]:
    """Per-sample metadata: the given list (checked) or each sample's ``.metadata``."""
    if metadata is None:
        metas = [getattr(s, "metadata", None) for s in samples]
    else:
        metas = list(metadata)
        if len(metas) != len(samples):
            raise ValueError(f"got {len(metas)} metadata entries for {len(samples)} samples")
    for i, m in enumerate(metas):
        if m is not None:
            try:
                validate_metadata(m)
            except ValueError as e:
                raise ValueError(f"metadata of sample {i}: {e}") from e
    return metas


def load_pretrained(loader: Callable[..., T], source: str, what: str, **kwargs: Any) -> T:
    """Call ``loader(source, **kwargs)`` and turn a missing/offline failure into one clear error."""
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as e:  # hub offline, no such repo/folder, missing file
        raise RewardModelUnavailable(missing_weights_message(what, source, e)) from e


def missing_weights_message(what: str, source: str, err: BaseException | None = None) -> str:
    """The one error text for unavailable weights: what was tried and how to supply it."""
    why = ""
    if err is not None:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        why = f" ({type(err).__name__}: {first})"
    repo, sep, filename = source.partition(":")
    fetch = f"{repo} {filename}" if sep and filename and "/" in repo else source
    return (
        f"could not load the {what} from {source!r}{why}. Fetch it where the network is available "
        f"(`huggingface-cli download {fetch}`, or copy the folder/file here), then pass the local "
        f"path as the reward's `model` option (get_reward(name, model=PATH), or "
        f"`--set NAME.model=PATH` on the command line). HF_HUB_OFFLINE=1 uses only local files "
        f"and the hub cache."
    )


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive chunks of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def image_of(sample: Sample) -> Any:
    """The sample's image as RGB, or ``None`` when it has none."""
    img = getattr(sample, "image", None)
    return None if img is None else img.convert("RGB")
