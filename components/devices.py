"""Whether a device name is one torch knows and this machine has: the one check behind ``diffblocks run
--device`` and ``diffblocks serve --device``."""

from __future__ import annotations


def device_problem(name: str) -> str | None:
    """What is wrong with device ``name`` here (None when it can be used): a name torch does not parse, a backend
    this machine lacks (CUDA, MPS, XPU), or a CUDA index past the device count. Imports torch."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        return str(err).strip().splitlines()[0] or type(err).__name__
    if device.type == "cpu":
        return None
    if not _available(torch, device.type):
        return f"{device.type.upper()} is not available on this machine"
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        return (f"this machine has {count} CUDA device{'s' if count > 1 else ''} "
                f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    return None


def _available(torch, kind: str) -> bool:
    """Whether torch says this machine has the ``kind`` backend; True for one it cannot ask about (the first use
    then says)."""
    for module in (getattr(torch, kind, None), getattr(torch.backends, kind, None)):
        is_available = getattr(module, "is_available", None)
        if callable(is_available):
            return bool(is_available())
    return True
