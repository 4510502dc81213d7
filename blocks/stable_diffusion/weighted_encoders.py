"""Stable Diffusion text encoding with prompt weights and prompts longer than CLIP's window.

Follows AUTOMATIC1111's web UI ("Original" emphasis), not compel:

- the prompt is parsed (:mod:`diffblocks.blocks.prompt_weighting`), each fragment tokenized on its own, and
  every token carries its fragment's weight;
- tokens are cut into chunks of ``model_max_length - 2`` (75 for CLIP), each encoded as
  ``BOS + chunk + EOS + pad`` (exactly what the tokenizer gives a prompt that fits) and the hidden states of
  the chunks are concatenated along the sequence axis: a 150-token prompt gives ``[1, 154, dim]``; a chunk ends
  early at a ``BREAK``, and a full one after a comma among its last 20 tokens, as in A1111;
- each chunk's hidden states are multiplied by the token weights, then rescaled so their mean equals the
  unweighted mean. A1111 takes that mean over the whole batch of prompts; here it is per prompt, so a prompt's
  embedding does not depend on the other prompts of its batch (the same for one prompt);
- the prompt and the negative prompt (and all prompts of a batch) are padded with empty chunks (``BOS + EOS +
  pad``, i.e. the empty prompt's encoding, as A1111 and compel pad) to the same number of chunks.

A prompt without weighting syntax that fits one chunk gives bitwise the plain encoder's embeddings;
``clip_skip`` applies to the prompt only, as in the plain block (and diffusers).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...components.errors import PromptSyntaxError
from ...components.textual_inversion import expand_prompts
from ...modular_pipelines.block import current_path
from ..checks import conflict, missing_one_of
from ..common import execution_device
from ..prompt_weighting import chunk_tokens, parse_prompt, token_weights
from .encoders import StableDiffusionTextEncoderStep, as_list, check_prompt_counts

NEAR_ZERO_MEAN = 1e-4  # |mean| / mean(|z|) below which a chunk's mean is taken as zero (see emphasize)


class Tokens(NamedTuple):
    """One prompt read for one tokenizer: its token ids, a weight each, its BREAKs (token counts) and the
    tokenizer's comma (None: none in its vocabulary)."""

    ids: list[int]
    weights: list[float]
    breaks: list[int]
    comma: int | None

    def chunks(self, size: int, count: int | None = None) -> list[tuple[list[int], list[float]]]:
        return chunk_tokens(self.ids, self.weights, size, count, self.breaks, self.comma)


def read_prompts(block, tokenizer, name: str, prompts: list[str]) -> list[Tokens]:
    """Token ids and per-token weights of each prompt (``name``: the input, for a syntax error)."""
    def tokenize(texts: list[str]) -> list[list[int]]:
        texts = expand_prompts(tokenizer, texts)  # multi-vector textual-inversion tokens
        return tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids

    comma = tokenizer.convert_tokens_to_ids(",</w>")  # A1111 looks the comma up so
    comma = None if comma is None or comma == tokenizer.unk_token_id else comma
    try:
        return [Tokens(*token_weights(parse_prompt(prompt), tokenize), comma) for prompt in prompts]
    except PromptSyntaxError as err:
        raise PromptSyntaxError.in_input(name, current_path(), type(block).__name__, err) from err


def output_chunks(block, tokenizer, block_state, token_lists: list[list[Tokens]]) -> int:
    """The chunks of every output: as many as given ``prompt_embeds`` (or ``negative_prompt_embeds``) hold,
    else enough for the longest prompt of ``token_lists``."""
    length = tokenizer.model_max_length
    for name in ("prompt_embeds", "negative_prompt_embeds"):
        embeds = getattr(block_state, name)
        if embeds is None:
            continue
        if embeds.shape[1] % length:
            raise conflict(block, [name, "prompt"], f"{name} has {embeds.shape[1]} tokens, not a multiple of the "
                                                    f"tokenizer's {length}; weighted prompts are encoded in chunks")
        return embeds.shape[1] // length
    return max(len(prompt.chunks(length - 2)) for tokens in token_lists for prompt in tokens)


def chunk_rows(tokenizer, tokens: list[Tokens], chunks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, weights, mask)``, each ``[prompts * chunks, model_max_length]``: ``BOS + chunk + EOS + pad``."""
    length = tokenizer.model_max_length
    ids, weights, mask = [], [], []
    for prompt in tokens:
        for chunk_ids, chunk_weights in prompt.chunks(length - 2, chunks):
            pad = length - 2 - len(chunk_ids)
            ids.append([tokenizer.bos_token_id, *chunk_ids, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * pad)
            weights.append([1.0, *chunk_weights, 1.0] + [1.0] * pad)
            mask.append([1] * (len(chunk_ids) + 2) + [0] * pad)
    return torch.tensor(ids), torch.tensor(weights, dtype=torch.float64), torch.tensor(mask)


def emphasize(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: scale each token's hidden state by its weight, then rescale each row so
    its mean (over tokens and features) is the unweighted mean. Rows whose weights are all 1 are unchanged.

    A row whose weighted mean is (nearly) zero, as after a final layer norm without bias (random test models;
    trained CLIPs have one), is left unrescaled (A1111's "No norm"): the rescale would divide by about zero."""
    if bool((weights == 1).all()):
        return hidden
    z = hidden.float()
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights.to(device=z.device, dtype=z.dtype).unsqueeze(-1)
    new_mean = z.mean(dim=(1, 2), keepdim=True)
    usable = new_mean.abs() > NEAR_ZERO_MEAN * z.abs().mean(dim=(1, 2), keepdim=True)
    z = torch.where(usable, z * (original_mean / new_mean), z)
    return z.to(hidden.dtype)


def clip_hidden(text_encoder, ids: torch.Tensor, mask: torch.Tensor, clip_skip: int | None) -> torch.Tensor:
    """The hidden states the plain SD encoder takes (last layer, or ``clip_skip`` earlier plus the final norm)."""
    mask = mask if getattr(text_encoder.config, "use_attention_mask", False) else None
    if clip_skip is None:
        return text_encoder(ids, attention_mask=mask)[0]
    hidden = text_encoder(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
    # transformers 5 puts final_layer_norm on CLIPTextModel itself; 4.x on its text_model
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)


def weighted_embeds(tokenizer, text_encoder, tokens: list[Tokens], chunks: int, device,
                    clip_skip: int | None = None) -> torch.Tensor:
    """Weighted hidden states of each prompt, ``chunks`` chunks concatenated: ``[prompts, chunks * L, dim]``."""
    ids, weights, mask = chunk_rows(tokenizer, tokens, chunks)
    hidden = emphasize(clip_hidden(text_encoder, ids.to(device), mask.to(device), clip_skip), weights)
    return hidden.reshape(len(tokens), -1, hidden.shape[-1])


class StableDiffusionWeightedTextEncoderStep(StableDiffusionTextEncoderStep):
    """Encode the prompt and negative prompt with CLIP, reading weights (``(word:1.3)``, ``(word)``, ``[word]``,
    ``word++``, ``word--``) and encoding prompts longer than CLIP's window in chunks.

    Follows AUTOMATIC1111's "Original" emphasis and chunking (see :mod:`~diffblocks.blocks.stable_diffusion.
    weighted_encoders`); the syntax is in :mod:`~diffblocks.blocks.prompt_weighting`. Same inputs, outputs and
    components as :class:`StableDiffusionTextEncoderStep`; swap it in with
    ``blocks["text_encoder"] = StableDiffusionWeightedTextEncoderStep``.
    """

    description = ("Encode prompts with weights ((word:1.3), (word), [word], word++) and any length (chunks of the "
                   "tokenizer's window, A1111-style)")

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        device = execution_device(components)
        check_prompt_counts(self, block_state)
        tokenizer, encoder = components.tokenizer, components.text_encoder
        positive = negative = None
        if block_state.prompt_embeds is None:
            if block_state.prompt is None:
                raise missing_one_of(self, ["prompt", "prompt_embeds"])
            positive = read_prompts(self, tokenizer, "prompt", as_list(block_state.prompt))
        batch = len(positive) if positive is not None else block_state.prompt_embeds.shape[0]
        if block_state.negative_prompt_embeds is None:
            negative = read_prompts(self, tokenizer, "negative_prompt",
                                    as_list(block_state.negative_prompt or "", batch))
        to_encode = [tokens for tokens in (positive, negative) if tokens is not None]
        chunks = output_chunks(self, tokenizer, block_state, to_encode) if to_encode else 0
        if positive is not None:
            block_state.prompt_embeds = weighted_embeds(tokenizer, encoder, positive, chunks, device,
                                                        block_state.clip_skip)
        if negative is not None:
            # without clip_skip, as the plain block (and diffusers) encode the negative prompt
            block_state.negative_prompt_embeds = weighted_embeds(tokenizer, encoder, negative, chunks, device)
        dtype = encoder.dtype if encoder is not None else block_state.prompt_embeds.dtype
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            setattr(block_state, name, getattr(block_state, name).to(device=device, dtype=dtype))
        self.set_block_state(state, block_state)
        return components, state
