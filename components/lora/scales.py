"""``set_adapters``' weights: one number, one per adapter, or a dict per component, spread over the models."""

from __future__ import annotations

from numbers import Number
from typing import Any, Mapping, Sequence

from ..errors import LoraError


def weights_per_component(names: Sequence[str], weights: Any, components: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{component: {adapter: weight}}`` for ``set_adapters(names, weights)``.

    ``weights``: None (1.0 each), a number, a list with one entry per adapter, where each entry is a number or a
    dict ``{"unet": 0.8, "text_encoder": 0.5}`` (components it leaves out get 1.0); or one such dict for all.
    """
    entries = list(weights) if isinstance(weights, (list, tuple)) else [weights] * len(names)
    if len(entries) != len(names):
        raise LoraError.bad_weights(f"{len(entries)} weights for {len(names)} adapters ({', '.join(names)})")
    result: dict[str, dict[str, float]] = {c: {} for c in components}
    for name, entry in zip(names, entries):
        for component in components:
            result[component][name] = _weight(entry, component, components)
    return result


def _weight(entry: Any, component: str, components: Sequence[str]) -> float:
    if entry is None:
        return 1.0
    if isinstance(entry, Mapping):
        unknown = [k for k in entry if k not in components]
        if unknown:
            raise LoraError.bad_weights(f"unknown component(s) {', '.join(map(str, unknown))} in {dict(entry)}; "
                                        f"this pipeline's LoRA components are {', '.join(components)}")
        return _weight(entry.get(component), component, components)
    if isinstance(entry, Number) and not isinstance(entry, bool):
        return float(entry)
    raise LoraError.bad_weights(f"a weight must be a number or a dict per component, got {entry!r}")
