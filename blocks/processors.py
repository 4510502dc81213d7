"""The pipeline's image processors, fitted to the VAE that is loaded.

A processor component is made with a default ``vae_scale_factor`` (8) before any VAE is known; a VAE with
another number of levels needs another factor. :func:`image_processor_for` rebuilds the processor for it,
keeping a bounded cache of the rebuilt ones keyed by class and config (never by object identity, which a
freed processor hands on to the next one).
"""

from __future__ import annotations

import functools
from typing import Any

from .common import vae_scale_factor

_CACHED_PROCESSORS = 32  # distinct (class, config) pairs kept; a few per process in practice


class _ConfigKey:
    """A config as a cache key: equal when the items are (compared by repr, as configs may hold lists)."""

    __slots__ = ("config", "key")

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.key = repr(sorted(config.items()))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ConfigKey) and other.key == self.key


@functools.lru_cache(maxsize=_CACHED_PROCESSORS)
def _rebuilt(cls: type, config: _ConfigKey):
    return cls.from_config(config.config)


def image_processor_for(components, name: str = "image_processor"):
    """The pipeline's processor ``name``, rebuilt for the loaded VAE's scale factor when they differ
    (equal processors share one rebuilt copy)."""
    processor = getattr(components, name)
    factor = vae_scale_factor(components)
    if processor.config.get("vae_scale_factor") == factor:
        return processor
    return _rebuilt(type(processor), _ConfigKey({**processor.config, "vae_scale_factor": factor}))


def paste_repainted_crops(state, processor) -> None:
    """Paste each decoded image (a repainted ``padding_mask_crop`` crop) back into the original image, for PIL
    output; other outputs and runs without a crop are left as they are."""
    crop = state.get("crops_coords")
    if state.get("padding_mask_crop") is not None and crop is not None and state.get("output_type") in (None, "pil"):
        image, mask = state.get("image"), state.get("mask_image")
        state.set("images", [processor.apply_overlay(mask, image, out, crop) for out in state.get("images")])
