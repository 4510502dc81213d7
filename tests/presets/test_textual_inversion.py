"""Textual inversion against diffusers' ``load_textual_inversion`` on the tiny SD 1.5 and SDXL models.

Tolerance: max abs difference <= 1e-4 on output_type="pt" images; unloading must give back the exact
tokenizer and embedding table (the same module object, bitwise images).
"""

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks.components.errors import TextualInversionError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
CALL = dict(num_inference_steps=2, height=32, width=32, output_type="pt")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def ours_image(pipe, prompt):
    return pipe(prompt=prompt, generator=torch.Generator().manual_seed(0), output="images", **CALL)


def ref_image(pipe, prompt):
    return pipe(prompt, generator=torch.Generator().manual_seed(0), guidance_scale=7.5, **CALL).images


def vectors(count, size, seed):
    return torch.randn(count, size, generator=torch.Generator().manual_seed(seed))


def write(tmp_path, kind, vecs):
    """An embedding file of ``kind``; returns (path, weight_name, token to pass)."""
    if kind == "diffusers-bin":
        torch.save({"<cat>": vecs[0]}, tmp_path / "learned_embeds.bin")
        return tmp_path, None, None
    if kind == "a1111-pt":
        torch.save({"string_to_param": {"*": vecs}, "name": "<cat>", "step": 100}, tmp_path / "cat.pt")
        return tmp_path / "cat.pt", None, None
    from safetensors.torch import save_file

    save_file({"emb_params": vecs}, tmp_path / "cat.safetensors")
    return tmp_path, "cat.safetensors", "<cat>"


@pytest.fixture(scope="module")
def sd_pair(sd_repo):
    from diffusers import StableDiffusionPipeline

    ref = StableDiffusionPipeline.from_pretrained(sd_repo)
    ref.set_progress_bar_config(disable=True)
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo), ref


@pytest.mark.parametrize("kind, count", [("diffusers-bin", 1), ("a1111-pt", 3), ("a1111-safetensors", 2)])
def test_sd_embeddings_match_diffusers_and_unload_exactly(sd_pair, tmp_path, kind, count):
    ours, ref = sd_pair
    tokenizer, encoder = ours.components["tokenizer"], ours.components["text_encoder"]
    embedding, size, base = encoder.get_input_embeddings(), len(tokenizer), ours_image(ours, "a <cat> dog")
    path, weight_name, token = write(tmp_path, kind, vectors(count, 32, seed=count))
    added = ours.loader.load_textual_inversion(str(path), token=token, weight_name=weight_name)
    assert added == ["<cat>"] + [f"<cat>_{i}" for i in range(1, count)]
    ref.load_textual_inversion(str(path), token=token, weight_name=weight_name)
    try:
        a, b = ours_image(ours, "a <cat> dog"), ref_image(ref, "a <cat> dog")
        assert (a - b).abs().max().item() <= TOL and (a - base).abs().max() > 1e-3
    finally:
        ref.unload_textual_inversion()
        ours.loader.unload_textual_inversion()
    assert encoder.get_input_embeddings() is embedding and len(tokenizer) == size
    assert "<cat>" not in tokenizer.get_vocab() and encoder.config.vocab_size == embedding.num_embeddings
    assert torch.equal(ours_image(ours, "a <cat> dog"), base)


def test_sdxl_clip_l_and_clip_g_match_diffusers(sdxl_repo, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    ours = build_pipeline(stable_diffusion_xl.TEXT2IMAGE_BLOCKS, sdxl_repo)
    ref = StableDiffusionXLPipeline.from_pretrained(sdxl_repo)
    ref.set_progress_bar_config(disable=True)
    state = {"clip_l": vectors(2, 32, seed=5), "clip_g": vectors(2, 32, seed=6)}
    save_file(state, tmp_path / "style.safetensors")
    base = ours_image(ours, "a <s> dog")
    ours.loader.load_textual_inversion(str(tmp_path / "style.safetensors"), token="<s>")
    ref.load_textual_inversion(state["clip_l"], token=["<s>", "<s>_1"], text_encoder=ref.text_encoder, tokenizer=ref.tokenizer)
    ref.load_textual_inversion(state["clip_g"], token=["<s>", "<s>_1"], text_encoder=ref.text_encoder_2,
                               tokenizer=ref.tokenizer_2)
    a, b = ours_image(ours, "a <s> dog"), ref_image(ref, "a <s> dog")
    assert (a - b).abs().max().item() <= TOL and (a - base).abs().max() > 1e-3
    ours.loader.unload_textual_inversion()
    assert torch.equal(ours_image(ours, "a <s> dog"), base)


def test_wrong_size_and_taken_token_change_nothing(sd_pair, tmp_path):
    ours, _ = sd_pair
    tokenizer = ours.components["tokenizer"]
    size = len(tokenizer)
    with pytest.raises(TextualInversionError, match="vectors of size 768.*takes 32.*another model family"):
        ours.loader.load_textual_inversion({"<big>": torch.zeros(768)})
    with pytest.raises(TextualInversionError, match="'a</w>' is already in the tokenizer"):
        ours.loader.load_textual_inversion({"x": torch.zeros(32)}, token="a</w>")
    with pytest.raises(TextualInversionError, match="SDXL embedding.*no second text encoder"):
        ours.loader.load_textual_inversion({"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 32)}, token="<s>")
    with pytest.raises(TextualInversionError, match="not a textual-inversion embedding.*found keys a, b"):
        ours.loader.load_textual_inversion({"a": torch.zeros(32), "b": torch.zeros(32)})
    assert len(tokenizer) == size
