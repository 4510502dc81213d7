"""The FLUX.1 blocks' pieces: packing and position ids as FluxPipeline makes them, the prompt encoding,
batching, errors that name the input, and the presets' names in the CLI table and the node catalog."""

import pytest
import torch

from diffblocks import ModularPipeline, SequentialPipelineBlocks
from diffblocks.blocks.flux import FluxTextEncoderStep
from diffblocks.blocks.flux.inputs import latent_image_ids, pack_latents, unpack_latents
from diffblocks.components.errors import InputValueError, MissingInputError
from diffblocks.presets import flux
from diffblocks.presets.names import PRESETS

SMALL = dict(height=32, width=32, max_sequence_length=16, num_inference_steps=2)


@pytest.fixture(scope="module")
def pipe(flux_dev_repo):
    pipe = SequentialPipelineBlocks.from_blocks_dict(flux.AUTO_BLOCKS).init_pipeline(flux_dev_repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_packing_and_ids_are_flux_pipelines():
    from diffusers import FluxPipeline

    latents = torch.randn(2, 16, 6, 8)
    packed = pack_latents(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 16, 6, 8))
    assert torch.equal(unpack_latents(packed, 6, 8), latents)
    assert torch.equal(latent_image_ids(6, 8), FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))


def test_prompt_encoding_matches_encode_prompt(pipe, flux_dev_repo):
    from diffusers import FluxPipeline

    reference = FluxPipeline.from_pretrained(flux_dev_repo)
    state = pipe.blocks.sub_blocks["text_encoder"]
    second = ["a red bird", "a blue bird"]
    out = pipe(prompt=["a cat", "a dog"], prompt_2=second, negative_prompt="blurry", output_type="latent",
               generator=torch.Generator().manual_seed(0), **SMALL)
    with torch.no_grad():
        embeds, pooled, text_ids = reference.encode_prompt(["a cat", "a dog"], prompt_2=second, max_sequence_length=16)
        negative, _, _ = reference.encode_prompt("blurry", max_sequence_length=16)
        single = reference.encode_prompt("a red bird", max_sequence_length=16)[0][0]
    close = lambda a, b: a.shape == b.shape and (a - b).abs().max().item() <= 1e-6  # noqa: E731
    assert close(out.get("pooled_prompt_embeds"), pooled) and close(out.get("prompt_embeds"), embeds)
    assert torch.equal(out.get("text_ids"), text_ids)
    assert close(out.get("negative_prompt_embeds"), negative.repeat(2, 1, 1))
    assert isinstance(state, FluxTextEncoderStep)
    one = pipe(prompt=["a cat", "a dog"], prompt_2="a red bird", output_type="latent", **SMALL)
    assert close(one.get("prompt_embeds")[1], single)  # one prompt_2 serves both prompts


def test_batches_of_prompts_and_images_per_prompt_match(pipe, flux_dev_repo):
    from diffusers import FluxPipeline

    reference = FluxPipeline.from_pretrained(flux_dev_repo)
    reference.set_progress_bar_config(disable=True)
    kwargs = dict(num_images_per_prompt=2, output_type="latent", **SMALL)
    ours = pipe(prompt=["a cat", "a dog"], generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    theirs = reference(["a cat", "a dog"], generator=torch.Generator().manual_seed(0), **kwargs).images
    assert ours.shape == theirs.shape == (4, 64, 64)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_precomputed_embeddings_give_the_same_latents(pipe):
    run = lambda **kw: pipe(generator=torch.Generator().manual_seed(0), output_type="latent", **SMALL, **kw)  # noqa: E731
    state = run(prompt="a cat", negative_prompt="blurry")
    given = run(**{name: state.get(name) for name in ("prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds",
                                                      "negative_pooled_prompt_embeds")})
    assert torch.equal(given.get("images"), state.get("images"))
    with pytest.raises(MissingInputError, match="pooled_prompt_embeds"):
        run(prompt_embeds=state.get("prompt_embeds"))


def test_errors_name_the_input(pipe):
    with pytest.raises(InputValueError, match="height") as err:
        pipe(prompt="a cat", output="images", **{**SMALL, "height": 2})
    assert "must be at least 4" in str(err.value)
    with pytest.raises(InputValueError, match=r"latents of shape \(1, 10, 64\).*need shape \(1, 64, 64\)"):
        pipe(prompt="a cat", latents=torch.zeros(1, 10, 64), output="images", **SMALL)
    from tiny_models import make_image

    # FluxImg2ImgPipeline's rounding keeps a step for any strength that is not lost in 2 - 2 * strength
    with pytest.raises(InputValueError, match="strength=1e-20 with num_inference_steps=2 leaves no denoising step"):
        pipe(prompt="a cat", image=make_image(), strength=1e-20, output="images", **SMALL)


def test_presets_are_named_for_the_cli_and_the_node_catalog(flux_dev_repo):
    from diffblocks.nodes import catalog

    names = {"flux-text2image", "flux-image2image", "flux-inpaint", "flux-auto", "flux-controlnet", "flux-fill",
             "flux-control", "flux-kontext", "flux-redux", "flux-ip-adapter"}
    assert names == {name for name in PRESETS if name.startswith("flux-")}
    types = catalog()
    assert {f"preset:{name}" for name in names} <= set(types)
    assert {"FluxTextEncoderStep", "FluxDenoiseStep", "FluxDecodeStep", "FlowMatchEulerDiscreteScheduler",
            "FluxControlNetInputStep", "FluxControlNetDenoiseStep", "LoadFluxControlNet", "FluxKontextImageStep",
            "FluxReduxEncoderStep", "FluxIPAdapterStep"} <= set(types)
    assert "FluxLoopDenoiser" not in types  # runs only inside its loop
    loaded = ModularPipeline.from_pretrained(flux_dev_repo)
    assert list(loaded.blocks.sub_blocks) == list(flux.AUTO_BLOCKS)
