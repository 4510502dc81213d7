"""Stable Diffusion XL text encoding with prompt weights and long prompts, for both CLIP encoders.

As for SD 1.5 (:mod:`diffblocks.blocks.stable_diffusion.weighted_encoders`, AUTOMATIC1111's "Original"
emphasis and chunking), applied to each encoder on its own before their hidden states are concatenated, as
A1111 does for SDXL. Every encoder, prompt and negative prompt gets the same number of chunks (the most any
of them needs). The pooled embeddings come from text_encoder_2's first chunk, unweighted, as in A1111 and
compel.
"""

from __future__ import annotations

import torch

from ..common import execution_device
from ..stable_diffusion.encoders import as_list
from ..stable_diffusion.weighted_encoders import chunk_rows, emphasize, output_chunks, read_prompts
from ..checks import missing_one_of
from .encoders import StableDiffusionXLTextEncoderStep, _encoders

EMBEDS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def sdxl_weighted_embeds(pairs, tokens_per_encoder, chunks: int, device, clip_skip: int | None = None):
    """``(hidden, pooled)``: each encoder's weighted penultimate (or ``clip_skip``) hidden states in ``chunks``
    chunks, concatenated over features, and the pooled output of the first chunk of the projecting encoder."""
    hidden, pooled = [], None
    for (tokenizer, encoder), tokens in zip(pairs, tokens_per_encoder):
        ids, weights, _ = chunk_rows(tokenizer, tokens, chunks)
        out = encoder(ids.to(device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0].reshape(len(tokens), chunks, -1)[:, 0]
        states = emphasize(out.hidden_states[-2 if clip_skip is None else -(clip_skip + 2)], weights)
        hidden.append(states.reshape(len(tokens), -1, states.shape[-1]))
    return torch.cat(hidden, dim=-1), pooled


class StableDiffusionXLWeightedTextEncoderStep(StableDiffusionXLTextEncoderStep):
    """Encode prompt and negative prompt with both CLIP encoders, reading weights (``(word:1.3)``, ``(word)``,
    ``[word]``, ``word++``, ``word--``) and encoding long prompts in chunks (AUTOMATIC1111's behaviour).

    Same inputs, outputs and components as :class:`StableDiffusionXLTextEncoderStep` (``prompt_2`` and
    ``negative_prompt_2`` are read with the same syntax); ``force_zeros_for_empty_prompt`` still gives zero
    negative embeddings when there is no negative prompt. Swap it in with
    ``blocks["text_encoder"] = StableDiffusionXLWeightedTextEncoderStep``.
    """

    description = ("Encode prompts for SDXL with weights ((word:1.3), (word), [word], word++) and any length "
                   "(chunks of the tokenizer's window, A1111-style)")

    @torch.no_grad()
    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        device = execution_device(components)
        self.check_inputs(block_state)
        pairs = _encoders(components)
        positive = negative = None
        if block_state.prompt_embeds is None:
            if block_state.prompt is None:
                raise missing_one_of(self, ["prompt", "prompt_embeds"])
            positive = self.read(pairs, block_state, "prompt", len(as_list(block_state.prompt)))
        batch = len(positive[0]) if positive is not None else block_state.prompt_embeds.shape[0]
        zeros = block_state.negative_prompt is None and components.force_zeros_for_empty_prompt
        if block_state.negative_prompt_embeds is None and not zeros:
            negative = self.read(pairs, block_state, "negative_prompt", batch)
        to_encode = [tokens for encoded in (positive, negative) if encoded is not None for tokens in encoded]
        chunks = output_chunks(self, pairs[0][0], block_state, to_encode) if to_encode else 0
        if positive is not None:
            block_state.prompt_embeds, block_state.pooled_prompt_embeds = sdxl_weighted_embeds(
                pairs, positive, chunks, device, block_state.clip_skip)
        if negative is not None:  # without clip_skip, as the plain block (and diffusers)
            block_state.negative_prompt_embeds, block_state.negative_pooled_prompt_embeds = sdxl_weighted_embeds(
                pairs, negative, chunks, device)
        elif block_state.negative_prompt_embeds is None:
            block_state.negative_prompt_embeds = torch.zeros_like(block_state.prompt_embeds)
            block_state.negative_pooled_prompt_embeds = torch.zeros_like(block_state.pooled_prompt_embeds)
        encoder = components.text_encoder_2 or components.text_encoder
        dtype = encoder.dtype if encoder is not None else block_state.prompt_embeds.dtype
        for name in EMBEDS:
            value = getattr(block_state, name)
            setattr(block_state, name, None if value is None else value.to(device=device, dtype=dtype))
        self.set_block_state(state, block_state)
        return components, state

    def read(self, pairs, block_state, name: str, batch: int) -> list:
        """Tokens and weights of ``name`` (for the first encoder) and ``name_2`` (else ``name``) per encoder."""
        first = as_list(getattr(block_state, name) or "", batch)
        second = getattr(block_state, f"{name}_2")
        second = first if second is None else as_list(second, batch)
        names_and_prompts = [(name, first), (f"{name}_2" if second is not first else name, second)][-len(pairs):]
        return [read_prompts(self, tokenizer, input_name, prompts)
                for (tokenizer, _), (input_name, prompts) in zip(pairs, names_and_prompts)]

