"""FLUX.1 Redux against diffusers' FluxPriorReduxPipeline followed by FluxPipeline, on a tiny SigLIP and embedder
saved in FLUX.1-Redux-dev's layout. Tolerance: max abs difference <= 1e-4 on output_type="pt" (float32, CPU)."""

import pytest
import torch
from tiny_flux import assert_close, make_flux_repo
from tiny_models import build_pipeline, make_image

from diffblocks.components.errors import AdapterError, BlockExecutionError, InputValueError
from diffblocks.presets import flux

TOL = 1e-4
CALL = dict(num_inference_steps=3, height=32, width=32, output_type="pt")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """``(FLUX repo, Redux folder)``: the Redux folder as FluxPriorReduxPipeline saves it (FLUX.1-Redux-dev's
    layout); SigLIP reads 32-pixel images in 8-pixel patches (16 tokens of width 24), the embedder maps them to the
    tiny T5's width, 32."""
    import diffusers
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    root = tmp_path_factory.mktemp("flux_redux")
    repo = make_flux_repo(root / "flux", dev=True)
    torch.manual_seed(1)
    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=24, intermediate_size=37, num_hidden_layers=2,
                                                   num_attention_heads=2, image_size=32, patch_size=8)).eval()
    diffusers.FluxPriorReduxPipeline(
        image_encoder=encoder, feature_extractor=SiglipImageProcessorPil(size={"height": 32, "width": 32}),
        image_embedder=ReduxImageEncoder(redux_dim=24, txt_in_features=32).eval(), text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None).save_pretrained(root / "redux")
    return repo, root / "redux"


def diffusers_redux(repos, image, **prior_call):
    """FluxPriorReduxPipeline's prompt embeddings (with FluxPipeline's text encoders), then FluxPipeline on them."""
    import diffusers

    repo, redux = repos
    pipe = diffusers.FluxPipeline.from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    prior = diffusers.FluxPriorReduxPipeline.from_pretrained(
        redux, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2,
        tokenizer_2=pipe.tokenizer_2)
    embeds = prior(image, **prior_call)
    return pipe(prompt_embeds=embeds.prompt_embeds, pooled_prompt_embeds=embeds.pooled_prompt_embeds,
                generator=torch.Generator().manual_seed(0), **CALL).images, prior


def ours(repos):
    repo, redux = repos
    pipe = build_pipeline(flux.REDUX_BLOCKS, repo)
    pipe.loader.load_redux(redux)
    return pipe



def test_one_image_with_a_prompt_matches_diffusers(repos):
    image = make_image(3)
    expected, _ = diffusers_redux(repos, image, prompt="a cat")
    got = ours(repos)(redux_image=image, prompt="a cat", generator=torch.Generator().manual_seed(0), output="images",
                      **CALL)
    assert_close(got, expected)


def test_two_images_mix_by_their_weights_as_diffusers(repos):
    images = [make_image(3), make_image(4)]
    weights = dict(prompt_embeds_scale=[0.7, 0.4], pooled_prompt_embeds_scale=[0.5, 0.9])
    expected, _ = diffusers_redux(repos, images, prompt="a cat", **weights)
    got = ours(repos)(redux_image=images, prompt="a cat", generator=torch.Generator().manual_seed(0),
                      output="images", **weights, **CALL)
    assert_close(got, expected)


def test_without_a_prompt_the_images_follow_zeros(repos):
    # diffusers' zeros are FLUX.1's widths (512 x 4096 and 768), too wide for the tiny transformer: the expected
    # embeddings are its image tokens after zeros of the transformer's widths, made here
    import diffusers

    image = make_image(3)
    _, prior = diffusers_redux(repos, image, prompt="a cat")
    image_embeds = prior.image_embedder(prior.encode_image(image, "cpu", 1)).image_embeds
    pipe = diffusers.FluxPipeline.from_pretrained(repos[0])
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt_embeds=torch.cat((torch.zeros(1, 512, 32), image_embeds), dim=1),
                    pooled_prompt_embeds=torch.zeros(1, 32), generator=torch.Generator().manual_seed(0), **CALL).images
    got = ours(repos)(redux_image=image, generator=torch.Generator().manual_seed(0), output="images", **CALL)
    assert_close(got, expected)


def test_bad_weights_and_prompts_fail_before_anything_is_encoded(repos):
    pipe = ours(repos)
    images = [make_image(3), make_image(4)]
    with pytest.raises(InputValueError) as err:
        pipe(redux_image=images, prompt_embeds_scale=[1.0], **CALL)
    assert "prompt_embeds_scale" in str(err.value) and "1 weights for 2 images" in str(err.value)
    with pytest.raises(InputValueError) as err:
        pipe(redux_image=images, prompt=["a", "b", "c"], **CALL)
    assert "3 prompts for 2 images" in str(err.value)


def test_without_redux_loaded_the_error_says_how_to_load_it(repos):
    pipe = build_pipeline(flux.REDUX_BLOCKS, repos[0])
    with pytest.raises(BlockExecutionError, match=r"AdapterError: redux_image was given but FLUX.1 Redux is not "
                                                  r"loaded \(empty: image_encoder, image_embedder\): "
                                                  r"pipe.loader.load_redux\("):
        pipe(redux_image=make_image(3), **CALL)
    with pytest.raises(AdapterError) as err:
        build_pipeline(flux.TEXT2IMAGE_BLOCKS, repos[0]).loader.load_redux(repos[1])
    assert "REDUX_BLOCKS" in str(err.value)


def test_a_redux_workflow_equals_the_pipeline(repos, tmp_path):
    from node_workflows import link, preset_text2image

    from diffblocks.nodes import ArtifactStore, Executor, catalog

    assert {"preset:flux-redux", "LoadRedux"} <= set(catalog())
    store = ArtifactStore(tmp_path)
    workflow = preset_text2image(str(repos[0]), steps=3, preset="flux-redux", height=32, width=32)
    del workflow["nodes"]["run"]["inputs"]["prompt"]
    workflow["nodes"]["redux"] = {"type": "LoadRedux", "inputs": {"components": link("load", "components"),
                                                                  "repo": str(repos[1])}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("redux", "components")
    sha = store.put_image(make_image(3))
    workflow["nodes"]["image"] = {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}}
    workflow["nodes"]["run"]["inputs"]["redux_image"] = link("image", "image")
    got = Executor(artifacts=store).run(workflow)["run"]["images"]
    expected = ours(repos)(redux_image=store.open_image(sha), generator=torch.Generator().manual_seed(0),
                           output="images", **CALL)
    assert torch.equal(got, expected)


def test_the_cli_runs_redux_as_the_api_does(repos, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    make_image(3).save(tmp_path / "ref.png")
    common = ["--model", str(repos[0]), "--height", "32", "--width", "32", "--steps", "3", "--device", "cpu",
              "--no-progress"]
    code, _, err = run_cli(capsys, "run", *common, "--preset", "flux-redux", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "preset 'flux-redux' needs --redux")
    code, _, err = run_cli(capsys, "run", *common, "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "diffblocks run needs --prompt: only --redux runs without one")
    redux = ["--redux", str(repos[1]), "--redux-image", str(tmp_path / "ref.png")]
    for preset, extra in (("flux-redux", []), ("flux", ["--prompt", "a cat"])):  # the preset, or the family
        code, _, err = run_cli(capsys, "run", *common, *redux, *extra, "--preset", preset,
                               "--out", str(tmp_path / f"{preset}.png"))
        assert code == 0, err
    reference = Image.open(tmp_path / "ref.png").convert("RGB")
    for preset, prompt in (("flux-redux", None), ("flux", "a cat")):
        expected = ours(repos)(redux_image=reference, prompt=prompt, height=32, width=32, num_inference_steps=3,
                               generator=torch.Generator().manual_seed(0), output="images")[0]
        got = np.asarray(Image.open(tmp_path / f"{preset}.png").convert("RGB"))
        assert np.array_equal(got, np.asarray(expected))
