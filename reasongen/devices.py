"""Devices and dtypes by name: ``"auto"`` is resolved here and nowhere else, dtype names by one table.

``"auto"`` (or ``None``) means CUDA when it is available, else the CPU; the ``"auto"`` dtype is
bfloat16 on CUDA and float32 on the CPU. torch is imported on first use, so configs can check
names against :data:`DTYPES` without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
"""Accepted dtype names (with their short aliases) → the ``torch`` dtype they name."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else CPU; anything else as ``torch.device``.

    Raises ``ValueError`` when a CUDA device is asked for and CUDA is not available.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use 'cpu'")
    return dev


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype a :data:`DTYPES` name stands for; an unknown name raises ``ValueError``."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on a CUDA ``device``, else float32; a name via :data:`DTYPES`;
    a ``torch.dtype`` as it is."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    return dtype_from_name(dtype)
