"""clip_skip on the SD 1.5 text encoder block: the hidden state that many layers from the end, final layer norm
applied (as diffusers' pipelines compute it); tolerance 0 (the same operations)."""

import torch
from tiny_models import build_pipeline

from diffblocks.presets import stable_diffusion


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm(sd_repo):
    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    tokens = pipe.tokenizer(["a cat"], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = pipe.text_encoder(tokens.input_ids, output_hidden_states=True).hidden_states
        expected = pipe.text_encoder.text_model.final_layer_norm(hidden[-2]) if hasattr(
            pipe.text_encoder, "text_model") else pipe.text_encoder.final_layer_norm(hidden[-2])
    embeds = pipe.blocks.sub_blocks["text_encoder"].init_pipeline()
    embeds.update_components(text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    skipped = embeds(prompt="a cat", clip_skip=1, output="prompt_embeds")
    plain = embeds(prompt="a cat", output="prompt_embeds")
    assert torch.equal(skipped, expected) and not torch.equal(skipped, plain)
