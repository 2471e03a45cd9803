"""The shapes world: a procedurally generated world of coloured shapes (scenes, renders, prompts,
CoTs with box plans) used to train and benchmark the embedded default model."""

from .cot import describe, write_cot
from .parse import parse_prompt
from .render import IMAGE_SIZE, render_objects, render_scene
from .scene import (
    BACKGROUND,
    COLORS,
    SHAPES,
    SIZES,
    TEXTURES,
    Relation,
    Scene,
    ShapeObject,
    relation_holds,
)
from .scene_sampler import sample_scene, sample_scenes

__all__ = [
    "BACKGROUND", "COLORS", "IMAGE_SIZE", "SHAPES", "SIZES", "TEXTURES", "Relation", "Scene",
    "ShapeObject", "describe", "parse_prompt", "relation_holds", "render_objects", "render_scene",
    "sample_scene", "sample_scenes", "write_cot",
]  # fmt: skip
