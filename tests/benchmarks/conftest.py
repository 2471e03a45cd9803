"""Shared fixtures of the benchmark scripts' tests: the scripts are files, not package modules."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("generation")`` imports ``benchmarks/generation.py`` as module
    ``generation_benchmark``, registered in ``sys.modules`` (its dataclasses look their module up
    there); each script is loaded once per session."""

    def load(stem: str) -> ModuleType:
        name = f"{stem}_benchmark"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{stem}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
