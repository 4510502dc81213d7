"""``format_value``: any value shown briefly (tensors as dtype and shape, long strings cut), for error
messages and reprs alike; every layer above shares it."""

from __future__ import annotations

from typing import Any

_MAX_STR = 60
_MAX_ITEMS = 4


def format_value(value: Any, max_len: int = _MAX_STR) -> str:
    """A short, single-line description of ``value`` for messages and reprs."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return f"Tensor(dtype={value.dtype}, shape={tuple(value.shape)})"
        if isinstance(value, torch.Generator):
            return f"Generator(device={value.device})"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if type(value).__module__.startswith("numpy") and hasattr(value, "shape"):
        return f"ndarray(dtype={value.dtype}, shape={tuple(value.shape)})"
    if type(value).__module__.startswith("PIL") and hasattr(value, "size"):
        return f"PIL.Image(mode={value.mode}, size={value.size})"
    if isinstance(value, str):
        return repr(value if len(value) <= max_len else value[: max_len - 3] + "...")
    if isinstance(value, (list, tuple)):
        items = [format_value(v, max_len=24) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... ({len(value)} items)")
        body = ", ".join(items)
        return f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        items = [f"{k!r}: {format_value(v, max_len=24)}" for k, v in list(value.items())[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... ({len(value)} items)")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, type):
        return value.__name__
    text = repr(value)
    if "\n" in text or len(text) > max_len:
        text = f"{type(value).__name__}(...)"
    return text


# --- blocks: one set of section builders serves both ``repr(block)`` and ``block.doc`` -------------
