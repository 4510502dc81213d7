"""Errors of LoRA and textual-inversion files: keys that do not fit the pipeline, misuse of loaded adapters."""

from __future__ import annotations

from typing import Iterable, Sequence

from .base import _did_you_mean, _listing
from .components import AdapterError


class LoraError(AdapterError):
    """A LoRA file does not fit the pipeline's models, or a LoRA operation names adapters that are not loaded."""

    @classmethod
    def keys_do_not_fit(cls, source: str, keys: Sequence[str], total: int, why: str) -> "LoraError":
        """``keys``: the first keys of ``source`` that fit no module (``total`` of them); nothing was applied."""
        shown = ", ".join(keys[:8]) + (f", ... ({total} in all)" if total > 8 else "")
        return cls(f"LoRA {source}: {total} key(s) do not fit this pipeline ({why}): {shown}. Nothing was loaded; "
                   "is it a LoRA for another model family (SD 1.5 / SDXL) or a format other than LoRA/LoCon, "
                   "LoHa and LoKr (DoRA, or LyCORIS' other kinds)?")

    @classmethod
    def no_component(cls, source: str, component: str, present: Iterable[str]) -> "LoraError":
        return cls(f"LoRA {source} has weights for '{component}', which this pipeline does not have or has not "
                   f"loaded (loaded: {_listing(present) or 'none'}); is it a LoRA for another model family? "
                   "Nothing was loaded")

    @classmethod
    def empty(cls, source: str) -> "LoraError":
        return cls(f"LoRA {source} holds no LoRA weights (no lora_A/lora_B, lora.down/lora.up or lora_down/lora_up "
                   "keys)")

    @classmethod
    def name_taken(cls, name: str) -> "LoraError":
        return cls(f"an adapter named '{name}' is already loaded; pass another adapter_name, or call "
                   "pipe.loader.unload_lora_weights() first")

    @classmethod
    def unknown_adapters(cls, names: Iterable[str], loaded: Iterable[str]) -> "LoraError":
        names, loaded = list(names), list(loaded)
        hint = _did_you_mean(names[0], loaded) if len(names) == 1 else ""
        loaded_text = _listing(loaded) if loaded else "none; call pipe.loader.load_lora_weights(...) first"
        return cls(f"no LoRA adapter named {_listing(names)}{hint}; loaded: {loaded_text}")

    @classmethod
    def bad_weights(cls, problem: str) -> "LoraError":
        return cls(f"set_adapters: {problem}")

    @classmethod
    def no_model(cls) -> "LoraError":
        return cls("LoRAs go into the UNet and the text encoders, and none of them is loaded: call "
                   "pipe.load_components() first")


class TextualInversionError(AdapterError):
    """A textual-inversion embedding does not fit the text encoders, or its token is taken."""

    @classmethod
    def bad_file(cls, source: str, found: Iterable[str]) -> "TextualInversionError":
        return cls(f"{source} is not a textual-inversion embedding: expected 'string_to_param' (A1111 .pt), "
                   f"'emb_params', 'clip_l'/'clip_g' (SDXL) or a single '<token>' tensor (diffusers "
                   f"learned_embeds); found keys {_listing(found)}")

    @classmethod
    def wrong_size(cls, source: str, encoder: str, size: int, expected: int) -> "TextualInversionError":
        return cls(f"{source}: the embedding has vectors of size {size}, but {encoder} takes {expected}; is it an "
                   "embedding for another model family (SD 1.5: 768, SDXL: 768 + 1280 as clip_l / clip_g)?")

    @classmethod
    def no_family(cls, source: str, size: int, widths: dict[int, str]) -> "TextualInversionError":
        """An embedding of vectors of ``size``, which no family's text encoder (``widths``: width -> family) takes."""
        known = ", ".join(f"{width} ({family})" for width, family in widths.items())
        return cls(f"{source}: the embedding has vectors of size {size}, and the text encoders' are {known} or SDXL's "
                   "clip_l / clip_g pair")

    @classmethod
    def token_taken(cls, token: str) -> "TextualInversionError":
        return cls(f"token '{token}' is already in the tokenizer; pass another token= or call "
                   "pipe.loader.unload_textual_inversion() first")

    @classmethod
    def no_token(cls, source: str) -> "TextualInversionError":
        return cls(f"{source} does not name its token; pass token='<my-token>'")

    @classmethod
    def no_encoder(cls, what: str) -> "TextualInversionError":
        return cls(f"textual inversion: {what}; call pipe.load_components() first")
