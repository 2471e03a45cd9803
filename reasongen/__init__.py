"""ReasonGen: a workbench for reasoning autoregressive text-to-image models (Janus family).

Importing the package is cheap: heavy modules (torch, transformers) load on first use of the
names below.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "reasongen.loading",
    "LoadedModel": "reasongen.loading",
    "ModelLoadError": "reasongen.loading",
    "generate": "reasongen.generation",
    "generate_stream": "reasongen.generation",
    "get_recipe": "reasongen.recipes",
    "RECIPES": "reasongen.recipes",
    "parse_plan": "reasongen.plans",
    "format_plan": "reasongen.plans",
    "render_plan": "reasongen.plans",
    "Box": "reasongen.types",
    "Plan": "reasongen.types",
    "Sample": "reasongen.types",
    "SamplingSettings": "reasongen.types",
    "CotDelta": "reasongen.types",
    "PlanReady": "reasongen.types",
    "ImageProgress": "reasongen.types",
    "Done": "reasongen.types",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reasongen' has no attribute {name!r}")
