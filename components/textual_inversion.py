"""Textual inversion: new tokens whose embeddings were learned, added to the tokenizers and text encoders.

Reads A1111 embeddings (``.pt`` with ``string_to_param``, ``.safetensors`` with ``emb_params``), SDXL embeddings
(``clip_l`` / ``clip_g``, one per text encoder) and diffusers' ``learned_embeds`` (``{token: tensor}``). A
multi-vector embedding becomes the tokens ``tok``, ``tok_1``, ... and prompts are expanded as diffusers'
``maybe_convert_prompt`` does (:func:`expand_prompts`, called by the text-encoder blocks).

The first load keeps the tokenizer's state and the text encoder's embedding module; unloading puts both back,
so the tokenizer and the embedding table are exactly what they were.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from .errors import TextualInversionError
from .lora.formats import read_weights
from .spec import mark_changed

DEFAULT_WEIGHT_NAMES = ["learned_embeds.safetensors", "learned_embeds.bin"]
SDXL_KEYS = ("clip_l", "clip_g")  # the SDXL embedding of text_encoder, text_encoder_2
_SAVED = "_diffblocks_textual_inversion_original"


def read_embedding(source, weight_name: str | None = None, token: str | None = None
                   ) -> tuple[str | None, dict[str, torch.Tensor], str]:
    """``(the token the file names or None, vectors, label)``: vectors ``{"": (n, size)}``, or for SDXL
    ``{"clip_l": ..., "clip_g": ...}``.

    Raises:
        TextualInversionError: the file holds none of the known layouts.
    """
    if isinstance(source, torch.Tensor):
        return token, {"": source}, "(tensor)"
    state, _, label = read_weights(source, weight_name, DEFAULT_WEIGHT_NAMES, "textual-inversion embedding")
    if isinstance(state, torch.Tensor):
        return token, {"": state}, label
    if all(k in state for k in SDXL_KEYS):
        return None, {k: state[k] for k in SDXL_KEYS}, label
    if isinstance(state.get("string_to_param"), Mapping):
        return state.get("name"), {"": state["string_to_param"]["*"]}, label
    if isinstance(state.get("emb_params"), torch.Tensor):
        return None, {"": state["emb_params"]}, label
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) == 1:
        name, vectors = next(iter(tensors.items()))
        return name, {"": vectors}, label
    raise TextualInversionError.bad_file(label, list(state))


def load_textual_inversion(pairs: Sequence[tuple], source, token: str | None = None,
                           weight_name: str | None = None) -> list[str]:
    """Add the embedding of ``source`` to ``pairs`` (``[(tokenizer, text_encoder), ...]``, the second pair
    for SDXL's ``clip_g``). Returns the tokens added (``tok``, ``tok_1``, ...).

    Raises:
        TextualInversionError: not an embedding, no token, a token already there, or vectors of the wrong size.
    """
    file_token, embeddings, label = read_embedding(source, weight_name, token)
    token = token or file_token
    if not token:
        raise TextualInversionError.no_token(label)
    targets = _targets(pairs, embeddings, label)
    for tokenizer, encoder, vectors in targets:  # check everything before changing anything
        _check(tokenizer, encoder, vectors, token, label)
    added = []
    for tokenizer, encoder, vectors in targets:
        added = _add(tokenizer, encoder, token, vectors)
    return added


def _targets(pairs, embeddings: dict[str, torch.Tensor], label: str) -> list[tuple]:
    if "" in embeddings:
        return [(*pairs[0], embeddings[""])]
    if len(pairs) < 2 or pairs[1][1] is None:
        raise TextualInversionError.no_encoder(f"{label} is an SDXL embedding (clip_l and clip_g), but the pipeline "
                                               "has no second text encoder")
    return [(*pair, embeddings[key]) for pair, key in zip(pairs, SDXL_KEYS)]


def _vectors(vectors: torch.Tensor) -> torch.Tensor:
    return vectors.reshape(-1, vectors.shape[-1]) if vectors.dim() > 1 else vectors[None]


def _tokens(token: str, count: int) -> list[str]:
    return [token] + [f"{token}_{i}" for i in range(1, count)]


def _check(tokenizer, encoder, vectors: torch.Tensor, token: str, label: str) -> None:
    size = encoder.get_input_embeddings().weight.shape[-1]
    if vectors.shape[-1] != size:
        raise TextualInversionError.wrong_size(label, type(encoder).__name__, vectors.shape[-1], size)
    vocab = tokenizer.get_vocab()
    for name in _tokens(token, len(_vectors(vectors))):
        if name in vocab:
            raise TextualInversionError.token_taken(name)


def _add(tokenizer, encoder: nn.Module, token: str, vectors: torch.Tensor) -> list[str]:
    vectors = _vectors(vectors)
    tokens = _tokens(token, len(vectors))
    old = encoder.get_input_embeddings()
    if _SAVED not in encoder.__dict__:
        encoder.__dict__[_SAVED] = (old, encoder.config.vocab_size, tokenizer, copy.deepcopy(tokenizer.__dict__))
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    weight = old.weight.detach()
    table = torch.cat([weight, weight.new_zeros(max(ids) + 1 - weight.shape[0], weight.shape[1])])
    table[ids] = vectors.to(device=weight.device, dtype=weight.dtype)
    new = nn.Embedding(table.shape[0], table.shape[1], device=weight.device, dtype=weight.dtype)
    new.weight = nn.Parameter(table, requires_grad=False)
    encoder.set_input_embeddings(new)
    encoder.config.vocab_size = table.shape[0]
    mark_changed(encoder)
    mark_changed(tokenizer)
    return tokens


def unload_textual_inversion(encoders: Sequence[nn.Module]) -> None:
    """Put back each encoder's embedding table and its tokenizer's state, as before the first load."""
    for encoder in reversed(list(encoders)):  # the last loaded first: encoders may share a tokenizer
        saved = encoder.__dict__.pop(_SAVED, None) if encoder is not None else None
        if saved is None:
            continue
        embedding, vocab_size, tokenizer, state = saved
        encoder.set_input_embeddings(embedding)
        encoder.config.vocab_size = vocab_size
        tokenizer.__dict__.clear()
        tokenizer.__dict__.update(state)
        mark_changed(encoder)
        mark_changed(tokenizer)


def expand_prompts(tokenizer, prompts: list[str]) -> list[str]:
    """Write out multi-vector tokens: ``tok`` -> ``tok tok_1 tok_2`` (diffusers' ``maybe_convert_prompt``)."""
    added = getattr(tokenizer, "added_tokens_encoder", None)
    if not added or not any(f"{t}_1" in added for t in added):
        return prompts
    return [_expand(tokenizer, prompt, added) for prompt in prompts]


def _expand(tokenizer, prompt: str, added: Mapping[str, int]) -> str:
    for token in set(tokenizer.tokenize(prompt)):
        if token in added:
            replacement, i = token, 1
            while f"{token}_{i}" in added:
                replacement += f" {token}_{i}"
                i += 1
            prompt = prompt.replace(token, replacement)
    return prompt
