"""The weighted text encoders swapped into the SD 1.5 and SDXL presets, on the tiny repos.

Reference: AUTOMATIC1111's "Original" emphasis and chunking, computed here by hand from the plain encoder's
embeddings (which the parity tests hold equal to diffusers'): each chunk is the plain encoding of its own
text, each token's hidden state times its weight, rescaled to the unweighted mean (per encoder for SDXL).
The tiny tokenizer gives one token per character (the last one of a word ends it), model_max_length 16, so a
chunk holds 14 tokens. Tolerance: 1e-5 max abs where the reference sums in another order or batch shape
(measured: at most 1.2e-6); bitwise where the computation is the same.
"""

from types import SimpleNamespace

import pytest
import torch
from tiny_models import build_pipeline, tiny_clip, write_tiny_tokenizer

from diffblocks import SequentialPipelineBlocks
from diffblocks.blocks.stable_diffusion import StableDiffusionTextEncoderStep, StableDiffusionWeightedTextEncoderStep
from diffblocks.blocks.stable_diffusion_xl import (
    StableDiffusionXLTextEncoderStep,
    StableDiffusionXLWeightedTextEncoderStep,
)
from diffblocks.components.errors import InputValueError, PromptSyntaxError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-5
EMBEDS = ["prompt_embeds", "negative_prompt_embeds"]
POOLED = ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
FAMILIES = {
    "sd": (stable_diffusion, StableDiffusionTextEncoderStep, StableDiffusionWeightedTextEncoderStep, "sd_repo"),
    "sdxl": (stable_diffusion_xl, StableDiffusionXLTextEncoderStep, StableDiffusionXLWeightedTextEncoderStep,
             "sdxl_repo"),
}
WORDS_14 = "ab cd ef gh ij kl mn op qr st uv wx yz ba".split()  # 28 tokens: two full chunks of 14


@pytest.fixture(scope="module", params=list(FAMILIES))
def fam(request):
    preset, plain_cls, weighted_cls, repo_fixture = FAMILIES[request.param]
    repo = request.getfixturevalue(repo_fixture)
    blocks = preset.TEXT2IMAGE_BLOCKS.copy()
    blocks["text_encoder"] = weighted_cls  # the one-block swap the feature is used with
    sdxl = request.param == "sdxl"
    plain = build_pipeline({"text_encoder": plain_cls}, repo)
    weighted = build_pipeline({"text_encoder": weighted_cls}, repo)
    # a trained CLIP's final layer norm has a bias, so its hidden states do not average to zero (the emphasis
    # rescales by that mean); a random one's is zero: give both copies the same nonzero bias
    torch.manual_seed(1)
    bias = torch.randn(32) * 0.5
    for pipe in (plain, weighted):
        encoder = pipe.text_encoder
        getattr(encoder, "text_model", encoder).final_layer_norm.bias.data.copy_(bias)
    return SimpleNamespace(sdxl=sdxl, repo=repo, preset=preset, weighted_cls=weighted_cls, blocks=blocks, plain=plain,
                           weighted=weighted, outputs=EMBEDS + (POOLED if sdxl else []))


def encode(pipe, outputs, **inputs):
    return pipe(**inputs, output=outputs)


def close(a, b):
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= TOL, f"max abs diff {diff}"


def a1111_emphasis(z, weights, encoders):
    """Each encoder's slice of ``z`` (one chunk) times the token weights, rescaled to its unweighted mean."""
    w = torch.tensor(weights, dtype=z.dtype).reshape(1, -1, 1)
    parts = []
    for part in z.chunk(encoders, dim=-1):
        weighted = part * w
        parts.append(weighted * (part.mean() / weighted.mean()))
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize("prompt, plain_prompt", [
    (["a cat", "a small dog"], ["a cat", "a small dog"]),
    (r"a \(cat\) \[1\]", "a (cat) [1]"),
    ("a (cat:1.0)", "a cat"),
])
def test_unweighted_prompts_give_the_plain_embeddings_bitwise(fam, prompt, plain_prompt):
    ours = encode(fam.weighted, fam.outputs, prompt=prompt, negative_prompt="ugly, blurry")
    plain = encode(fam.plain, fam.outputs, prompt=plain_prompt, negative_prompt="ugly, blurry")
    for name in fam.outputs:
        assert torch.equal(ours[name], plain[name]), name


def clip_skip_reference(pipe, prompt, clip_skip):
    """diffusers' clip_skip: SD 1.5 takes hidden state -(k+1) through the final layer norm; SDXL -(k+2) of each
    encoder. (The plain SD block does the same through ``text_model``, which transformers 5 no longer has.)"""
    ids = pipe.tokenizer(prompt, padding="max_length", return_tensors="pt").input_ids
    encoder = pipe.text_encoder
    if getattr(pipe, "text_encoder_2", None) is None:
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
        return getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
    return torch.cat([e(ids, output_hidden_states=True).hidden_states[-(clip_skip + 2)]
                      for e in (encoder, pipe.text_encoder_2)], dim=-1)


def test_clip_skip_takes_the_plain_encoders_layer(fam):
    ours = encode(fam.weighted, fam.outputs, prompt="a cat", clip_skip=1)
    assert torch.equal(ours["prompt_embeds"], clip_skip_reference(fam.weighted, "a cat", 1))
    assert not torch.equal(ours["prompt_embeds"], encode(fam.weighted, fam.outputs, prompt="a cat")["prompt_embeds"])
    if fam.sdxl:  # the plain SD block's clip_skip fails on transformers 5 (no CLIPTextModel.text_model)
        plain = encode(fam.plain, fam.outputs, prompt="a cat", clip_skip=1)
        for name in fam.outputs:
            assert torch.equal(ours[name], plain[name]), name
    weighted = encode(fam.weighted, fam.outputs, prompt="a (cat:1.3)", clip_skip=1)["prompt_embeds"]
    assert weighted.shape == ours["prompt_embeds"].shape and not torch.equal(weighted, ours["prompt_embeds"])


def sharing(blocks, repo, pipe, **components):
    """A pipeline of ``blocks`` on the models ``pipe`` has loaded (none loaded twice), ``components`` swapped."""
    other = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(repo)
    other.update_components(**{**pipe.components, **components})
    other.set_progress_bar_config(disable=True)
    return other


@pytest.fixture(scope="module")
def weighted_preset(fam):
    """The preset with the weighted text encoder swapped in, its models loaded from the repo."""
    return build_pipeline(fam.blocks, fam.repo)


def test_unweighted_prompt_gives_the_same_image(fam, weighted_preset):
    weighted = weighted_preset
    plain = sharing(fam.preset.TEXT2IMAGE_BLOCKS, fam.repo, weighted)
    kw = dict(prompt="a cat", negative_prompt="ugly", num_inference_steps=2, output_type="pt", output="images")
    assert torch.equal(weighted(generator=torch.Generator().manual_seed(0), **kw),
                       plain(generator=torch.Generator().manual_seed(0), **kw))


def test_weighted_prompt_follows_a1111_emphasis(fam):
    assert len(fam.plain.tokenizer("ab cd ef gh").input_ids) == 10  # BOS, 8 characters, EOS
    ours = encode(fam.weighted, fam.outputs, prompt="ab (cd:1.5) [ef] gh++", negative_prompt="ugly")
    plain = encode(fam.plain, fam.outputs, prompt="ab cd ef gh", negative_prompt="ugly")
    weights = [1, 1, 1, 1.5, 1.5, 1 / 1.1, 1 / 1.1, 1.1 ** 2, 1.1 ** 2] + [1] * 7  # BOS a b c d e f g h EOS pad...
    expected = a1111_emphasis(plain["prompt_embeds"], weights, 2 if fam.sdxl else 1)
    assert (ours["prompt_embeds"] - plain["prompt_embeds"]).abs().max() > 1e-2
    close(ours["prompt_embeds"], expected)
    for name in fam.outputs[1:]:  # the negative prompt, and the pooled embeds (unweighted, as A1111 and compel)
        assert torch.equal(ours[name], plain[name]), name


def test_long_prompt_is_encoded_in_chunks_of_the_tokenizer_window(fam):
    first, second = " ".join(WORDS_14[:7]), " ".join(WORDS_14[7:])
    ours = encode(fam.weighted, fam.outputs, prompt=f"{first} {second}", negative_prompt="ugly")
    dim = ours["prompt_embeds"].shape[-1]
    assert ours["prompt_embeds"].shape == ours["negative_prompt_embeds"].shape == (1, 32, dim)
    parts = [encode(fam.plain, fam.outputs, prompt=text, negative_prompt="ugly") for text in (first, second)]
    close(ours["prompt_embeds"], torch.cat([p["prompt_embeds"] for p in parts], dim=1))
    # the negative prompt is padded with the empty prompt's chunk, as A1111 and compel pad it
    empty = encode(fam.plain, fam.outputs, prompt="")["prompt_embeds"]
    close(ours["negative_prompt_embeds"], torch.cat([parts[0]["negative_prompt_embeds"], empty], dim=1))
    if fam.sdxl:  # pooled: text_encoder_2's first chunk
        close(ours["pooled_prompt_embeds"], parts[0]["pooled_prompt_embeds"])


@pytest.mark.parametrize("prompt, parts", [
    ("ab cd BREAK ef", ["ab cd", "ef"]),  # BREAK ends the chunk early
    ("ab cd ef gh, ij kl mn op", ["ab cd ef gh,", "ij kl mn op"]),  # full at "m": it ends after the comma
])
def test_break_and_a_comma_near_the_end_of_a_chunk_start_the_next_as_in_a1111(fam, prompt, parts):
    """Each chunk is the plain encoding of its own text: the tokens up to the BREAK, or up to the comma of a
    chunk that filled up (the tiny tokenizer's 14 tokens) within 20 tokens of it."""
    ours = encode(fam.weighted, fam.outputs, prompt=prompt, negative_prompt="ugly")
    plain = [encode(fam.plain, fam.outputs, prompt=text, negative_prompt="ugly") for text in parts]
    assert ours["prompt_embeds"].shape[1] == 2 * 16  # two chunks of the tokenizer's 16
    close(ours["prompt_embeds"], torch.cat([p["prompt_embeds"] for p in plain], dim=1))


def test_prompts_are_padded_to_the_longest_negative_and_batch(fam):
    long = " ".join(WORDS_14)
    ours = encode(fam.weighted, fam.outputs, prompt=["a cat", "a dog"], negative_prompt=[long, "ugly"])
    assert ours["prompt_embeds"].shape[:2] == ours["negative_prompt_embeds"].shape[:2] == (2, 32)
    plain = encode(fam.plain, fam.outputs, prompt=["a cat", ""])["prompt_embeds"]
    close(ours["prompt_embeds"][:1], torch.cat([plain[:1], plain[1:]], dim=1))


def test_given_prompt_embeds_set_the_chunks_of_the_negative_prompt(fam):
    first = encode(fam.weighted, fam.outputs, prompt=" ".join(WORDS_14), negative_prompt="ugly")
    given = {name: first[name] for name in fam.outputs if "negative" not in name}
    again = encode(fam.weighted, fam.outputs, negative_prompt="ugly", **given)
    for name in fam.outputs:
        assert torch.equal(again[name], first[name]), name
    cut = {name: value[:, :20] if value.ndim == 3 else value for name, value in first.items()}
    both = encode(fam.weighted, fam.outputs, **cut)  # nothing to encode: any length passes through
    for name in fam.outputs:
        assert torch.equal(both[name], cut[name]), name
    positive = {name: value for name, value in cut.items() if "negative" not in name}
    with pytest.raises(InputValueError, match="prompt_embeds has 20 tokens, not a multiple of the tokenizer's 16"):
        encode(fam.weighted, fam.outputs, negative_prompt="ugly", **positive)


def test_zero_mean_hidden_states_are_weighted_without_the_rescale(sd_repo):
    # the tiny repo's CLIP: a final layer norm without bias, so every token's last hidden state averages to 0
    pipe = build_pipeline({"text_encoder": StableDiffusionWeightedTextEncoderStep}, sd_repo)
    ours = encode(pipe, EMBEDS, prompt="ab (cd:1.5)")["prompt_embeds"]
    plain = encode(pipe, EMBEDS, prompt="ab cd")["prompt_embeds"]
    weights = torch.tensor([1, 1, 1, 1.5, 1.5] + [1] * 11).reshape(1, -1, 1)
    assert torch.isfinite(ours).all()
    close(ours, plain * weights)


def test_sdxl_without_negative_prompt_gives_zeros_of_the_long_shape(sdxl_repo):
    pipe = build_pipeline({"text_encoder": StableDiffusionXLWeightedTextEncoderStep}, sdxl_repo)
    out = encode(pipe, EMBEDS + POOLED, prompt=" ".join(WORDS_14))
    assert out["negative_prompt_embeds"].shape == out["prompt_embeds"].shape == (1, 32, 64)
    assert not out["negative_prompt_embeds"].any() and not out["negative_pooled_prompt_embeds"].any()


@pytest.mark.parametrize("name", ["prompt", "negative_prompt"])
def test_bad_syntax_names_the_input_block_and_position(fam, name):
    inputs = {"prompt": "a cat", name: "a (cat"}
    with pytest.raises(PromptSyntaxError) as info:
        fam.weighted(**inputs)
    message = str(info.value)
    assert f"input '{name}'" in message and fam.weighted_cls.__name__ in message
    assert "'(' at position 2 is never closed" in message


def test_150_token_prompt_on_a_77_token_window_gives_two_chunks_and_an_image(fam, weighted_preset, tmp_path):
    torch.manual_seed(0)
    tokenizer = write_tiny_tokenizer(tmp_path / "tok77", max_length=77)
    swap = {"tokenizer": tokenizer, "text_encoder": tiny_clip(tokenizer)}
    if fam.sdxl:
        swap.update(tokenizer_2=tokenizer, text_encoder_2=tiny_clip(tokenizer, projection=True))
    pipe = sharing(fam.blocks, fam.repo, weighted_preset, **swap)
    prompt = " ".join(["abc"] * 50)  # 150 tokens: two chunks of 75
    assert len(tokenizer(prompt).input_ids) == 152
    out = pipe(prompt=prompt, negative_prompt="ugly", num_inference_steps=2, output_type="pt",
               generator=torch.Generator().manual_seed(0), output=EMBEDS + ["images"])
    dim = 64 if fam.sdxl else 32
    assert out["prompt_embeds"].shape == out["negative_prompt_embeds"].shape == (1, 154, dim)
    assert out["images"].shape == (1, 3, 32, 32) and torch.isfinite(out["images"]).all()


@pytest.mark.gpu
def test_weighted_encoder_on_cuda_in_half_precision(sd_repo):
    pipes = []
    for cls in (StableDiffusionTextEncoderStep, StableDiffusionWeightedTextEncoderStep):
        pipe = SequentialPipelineBlocks.from_blocks_dict({"text_encoder": cls}).init_pipeline(sd_repo)
        pipe.load_components(torch_dtype=torch.float16)
        pipes.append(pipe.to("cuda"))
    plain, weighted = pipes
    assert torch.equal(encode(weighted, EMBEDS, prompt="a cat")["prompt_embeds"],
                       encode(plain, EMBEDS, prompt="a cat")["prompt_embeds"])
    out = encode(weighted, EMBEDS, prompt="ab (cd:1.5) " + " ".join(WORDS_14), negative_prompt="ugly")  # 32 tokens
    embeds = out["prompt_embeds"]
    assert embeds.device.type == "cuda" and embeds.dtype == torch.float16 and torch.isfinite(embeds).all()
    assert embeds.shape == out["negative_prompt_embeds"].shape == (1, 48, 32)
