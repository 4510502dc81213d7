"""FLUX.1 ControlNets against diffusers' FluxControlNetModel / FluxControlNetPipeline on the same tiny random
weights: InstantX-style (the control image VAE-encoded and packed), Union (a control mode token) and XLabs-style
(the control image in pixels through ``input_hint_block``, residuals cycled over the blocks; on a repo whose VAE
scales by 8, as FLUX.1's, which that encoder assumes); image-to-image and inpainting with a ControlNet against
FluxControlNetImg2ImgPipeline / FluxControlNetInpaintPipeline. Also with true CFG, where the ControlNet runs on the
prompt and both branches get its residuals. Tolerance: max abs difference <= 1e-4 (float32, CPU).
"""

import pytest
import torch
from node_workflows import link, preset_text2image
from tiny_flux import assert_close, make_flux_repo, reference_controlnet
from tiny_models import build_pipeline, make_image, make_mask

from diffblocks.components import FluxControlNetModel, FluxMultiControlNetModel
from diffblocks.components.errors import BlockExecutionError, InputValueError
from diffblocks.guiders import ClassifierFreeGuidance
from diffblocks.nodes import ArtifactStore, Executor
from diffblocks.presets import flux

TOL = 1e-4
CALL = dict(num_inference_steps=3, output_type="pt", max_sequence_length=16, guidance_scale=3.5)
VAE_BY_8 = dict(block_out_channels=(16,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4)
KINDS = {"instantx": ({}, 32), "union": ({"num_mode": 3}, 32),
         "xlabs": ({"conditioning_embedding_channels": 16, "patch_size": 2}, 64)}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return {32: make_flux_repo(tmp_path_factory.mktemp("flux"), dev=True),
            64: make_flux_repo(tmp_path_factory.mktemp("flux_vae8"), dev=True, **VAE_BY_8)}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """``{kind: (diffusers' ControlNet, the folder it is saved in)}``."""
    folders = {kind: tmp_path_factory.mktemp(kind) for kind in KINDS}
    return {kind: (reference_controlnet(folder, **KINDS[kind][0]), folder) for kind, folder in folders.items()}


def ours(repo, folder):
    pipe = build_pipeline(flux.CONTROLNET_BLOCKS, repo)
    pipe.update_components(controlnet=FluxControlNetModel.from_pretrained(folder))
    return pipe



@pytest.mark.parametrize("kind", KINDS)
def test_the_model_matches_diffusers(kind, nets):
    reference, folder = nets[kind]
    model = FluxControlNetModel.from_pretrained(folder).eval()
    size = KINDS[kind][1]
    tokens = (size // 4) ** 2 if kind != "xlabs" else (size // 16) ** 2
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(tokens, 3)
    ids[:, 1], ids[:, 2] = torch.arange(tokens) // int(tokens ** 0.5), torch.arange(tokens) % int(tokens ** 0.5)
    control = torch.randn(2, 3, size, size, generator=g) if kind == "xlabs" else torch.randn(2, tokens, 64, generator=g)
    inputs = dict(hidden_states=torch.randn(2, tokens, 64, generator=g), controlnet_cond=control,
                  encoder_hidden_states=torch.randn(2, 8, 32, generator=g), pooled_projections=torch.randn(2, 32, generator=g),
                  timestep=torch.full([2], 0.4), img_ids=ids, txt_ids=torch.zeros(8, 3), guidance=torch.full([2], 3.5),
                  conditioning_scale=0.7, return_dict=False)
    if kind == "union":
        inputs["controlnet_mode"] = torch.tensor([[0], [2]])
    with torch.no_grad():
        got, expected = model(**inputs), reference(**inputs)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
        assert_close(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_the_preset_matches_flux_controlnet_pipeline(kind, repos, nets):
    import diffusers

    reference, folder = nets[kind]
    size = KINDS[kind][1]
    repo = repos[size]
    call = dict(control_image=make_image(7, size=size), controlnet_conditioning_scale=0.8, control_guidance_end=0.7,
                height=size, width=size, **CALL)
    if kind == "union":
        call["control_mode"] = 2
    pipe = diffusers.FluxControlNetPipeline.from_pretrained(repo, controlnet=reference)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    got = ours(repo, folder)(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call)
    assert_close(got, expected)
    plain = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)(
        prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", height=size, width=size, **CALL)
    assert (got - plain).abs().max() > 1e-2  # the ControlNet does steer


@pytest.mark.parametrize("workflow", ["Img2Img", "Inpaint"])
def test_image_to_image_and_inpainting_presets_match_their_pipelines(workflow, repos, nets):
    import diffusers

    reference, folder = nets["instantx"]
    call = dict(control_image=make_image(7, size=32), image=make_image(2, size=32), strength=0.8, height=32, width=32,
                controlnet_conditioning_scale=0.6, **CALL)
    blocks = flux.CONTROLNET_IMAGE2IMAGE_BLOCKS
    if workflow == "Inpaint":
        call["mask_image"], blocks = make_mask(size=32), flux.CONTROLNET_INPAINT_BLOCKS
    pipe = getattr(diffusers, f"FluxControlNet{workflow}Pipeline").from_pretrained(repos[32], controlnet=reference)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    ours_pipe = build_pipeline(blocks, repos[32])
    ours_pipe.update_components(controlnet=FluxControlNetModel.from_pretrained(folder))
    assert_close(ours_pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call), expected)


def multi_call(size=32):
    return dict(control_image=[make_image(7, size=size), make_image(4, size=size)], control_mode=[None, 2],
                controlnet_conditioning_scale=[0.8, 0.5], control_guidance_start=[0.0, 0.3],
                control_guidance_end=[0.7, 1.0], height=size, width=size, **CALL)


def test_several_controlnets_sum_their_residuals_as_diffusers_does(repos, nets):
    import diffusers

    (first, first_folder), (union, union_folder) = nets["instantx"], nets["union"]
    call = multi_call()
    pipe = diffusers.FluxControlNetPipeline.from_pretrained(
        repos[32], controlnet=diffusers.FluxMultiControlNetModel([first, union]))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    ours_pipe = build_pipeline(flux.CONTROLNET_BLOCKS, repos[32])
    ours_pipe.update_components(controlnet=FluxMultiControlNetModel(
        [FluxControlNetModel.from_pretrained(first_folder), FluxControlNetModel.from_pretrained(union_folder)]))
    got = ours_pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call)
    assert_close(got, expected)
    alone = ours(repos[32], first_folder)(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images",
                                          control_image=call["control_image"][0], height=32, width=32, **CALL)
    assert (got - alone).abs().max() > 1e-3  # the second ControlNet adds its own
    with pytest.raises(InputValueError, match="1 control images for 2 ControlNets"):
        ours_pipe(prompt="a cat", control_image=[call["control_image"][0]], height=32, width=32, **CALL)


def test_one_union_controlnet_reads_several_images_each_with_its_mode(repos, nets):
    import diffusers

    union, folder = nets["union"]
    call = {**multi_call(), "control_mode": [0, 2]}
    pipe = diffusers.FluxControlNetPipeline.from_pretrained(repos[32], controlnet=diffusers.FluxMultiControlNetModel([union]))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), **call).images
    ours_pipe = build_pipeline(flux.CONTROLNET_BLOCKS, repos[32])
    ours_pipe.update_components(controlnet=FluxMultiControlNetModel([FluxControlNetModel.from_pretrained(folder)]))
    assert_close(ours_pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call), expected)


def test_true_cfg_gives_both_branches_the_residuals_of_the_prompt(repos, nets):
    import diffusers

    reference, folder = nets["instantx"]
    call = dict(control_image=make_image(3, size=32), height=32, width=32, negative_prompt="a dog", **CALL)
    pipe = diffusers.FluxControlNetPipeline.from_pretrained(repos[32], controlnet=reference)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a cat", generator=torch.Generator().manual_seed(0), true_cfg_scale=2.0, **call).images
    ours_pipe = ours(repos[32], folder)
    ours_pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=2.0))
    assert_close(ours_pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call), expected)


def test_two_prompts_two_images_each_with_true_cfg_match(repos, nets):
    import diffusers

    reference, folder = nets["union"]
    call = dict(control_image=make_image(7, size=32), control_mode=1, num_images_per_prompt=2, height=32, width=32,
                negative_prompt=["a dog", "a bird"], **CALL)
    pipe = diffusers.FluxControlNetPipeline.from_pretrained(repos[32], controlnet=reference)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(["a cat", "a cow"], generator=torch.Generator().manual_seed(0), true_cfg_scale=2.0, **call).images
    ours_pipe = ours(repos[32], folder)
    ours_pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=2.0))
    got = ours_pipe(prompt=["a cat", "a cow"], generator=torch.Generator().manual_seed(0), output="images", **call)
    assert got.shape[0] == 4
    assert_close(got, expected)


def test_wrong_modes_and_windows_fail_before_the_first_step(repos, nets):
    steps = []
    call = dict(prompt="a cat", control_image=make_image(3, size=32), height=32, width=32,
                callback_on_step_end=lambda *a: steps.append(1), **CALL)
    union = ours(repos[32], nets["union"][1])
    with pytest.raises(InputValueError, match=r"'controlnet_input' \(FluxControlNetInputStep\): inputs 'control_mode' "
                                              r"and 'controlnet' .*a Union ControlNet needs control_mode.*this one is\)"):
        union(**call)
    with pytest.raises(InputValueError, match=r"this one is not\)"):
        ours(repos[32], nets["instantx"][1])(control_mode=1, **call)
    with pytest.raises(InputValueError, match="start 0.5 is not before end 0.5"):
        union(control_mode=0, control_guidance_start=0.5, control_guidance_end=0.5, **call)
    with pytest.raises(BlockExecutionError, match=r"AdapterError: control_image was given but no ControlNet is loaded: "
                                                  r"pipe.update_components\(controlnet=ComponentSpec\('controlnet', "
                                                  r"FluxControlNetModel"):
        build_pipeline(flux.CONTROLNET_BLOCKS, repos[32])(**call)
    assert steps == []


def test_from_transformer_copies_the_trunk_and_starts_at_zero(repos):
    transformer = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repos[32]).transformer
    net = FluxControlNetModel.from_transformer(transformer, num_layers=1, num_single_layers=2, num_mode=4)
    assert net.config.num_mode == 4 and net.config.attention_head_dim == transformer.config.attention_head_dim
    for ours_block, theirs in ((net.transformer_blocks[0], transformer.transformer_blocks[0]),
                               (net.single_transformer_blocks[1], transformer.single_transformer_blocks[1])):
        assert all(torch.equal(a, b) for a, b in zip(ours_block.state_dict().values(), theirs.state_dict().values()))
    assert all(not p.any() for layer in [*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder]
               for p in layer.parameters())


def test_a_flux_controlnet_workflow_equals_the_pipeline(repos, nets, tmp_path):
    store = ArtifactStore(tmp_path)
    folder = nets["instantx"][1]
    workflow = preset_text2image(str(repos[32]), steps=3, preset="flux-controlnet", controlnet_conditioning_scale=0.7,
                                 height=32, width=32, max_sequence_length=16)
    workflow["nodes"]["cn"] = {"type": "LoadFluxControlNet", "inputs": {"repo": str(folder)}}
    workflow["nodes"]["run"]["inputs"]["controlnet"] = link("cn", "controlnet")
    sha = store.put_image(make_image(4, size=32))
    workflow["nodes"]["image"] = {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}}
    workflow["nodes"]["run"]["inputs"]["control_image"] = link("image", "image")
    got = Executor(artifacts=store).run(workflow)["run"]["images"]
    expected = ours(repos[32], folder)(prompt="a cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                                       control_image=store.open_image(sha), controlnet_conditioning_scale=0.7, height=32,
                                       width=32, max_sequence_length=16, output_type="pt", output="images")
    assert torch.equal(got, expected)


def test_the_cli_runs_a_union_controlnet_as_the_api_does(repos, nets, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from test_cli import run_cli

    folder = nets["union"][1]
    make_image(5, size=32).save(tmp_path / "edges.png")
    common = ["--prompt", "a cat", "--model", str(repos[32]), "--controlnet", str(folder), "--control-image",
              str(tmp_path / "edges.png"), "--control-mode", "2", "--height", "32", "--width", "32", "--steps", "3",
              "--device", "cpu", "--no-progress"]
    for preset in ("flux-controlnet", "flux-text2image"):  # the preset, or --controlnet added to text-to-image
        code, _, err = run_cli(capsys, "run", *common, "--preset", preset, "--out", str(tmp_path / f"{preset}.png"))
        assert code == 0, err
    expected = ours(repos[32], folder)(prompt="a cat", control_image=Image.open(tmp_path / "edges.png").convert("RGB"),
                                       control_mode=2, height=32, width=32, num_inference_steps=3,
                                       generator=torch.Generator().manual_seed(0), output="images")[0]
    for preset in ("flux-controlnet", "flux-text2image"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{preset}.png").convert("RGB")), np.asarray(expected))


def test_the_cli_adds_a_controlnet_to_image_to_image(repos, nets, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from test_cli import run_cli

    folder = nets["instantx"][1]
    make_image(5, size=32).save(tmp_path / "edges.png")
    make_image(6, size=32).save(tmp_path / "start.png")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--preset", "flux", "--model", str(repos[32]),
                           "--controlnet", str(folder), "--control-image", str(tmp_path / "edges.png"), "--image",
                           str(tmp_path / "start.png"), "--strength", "0.7", "--height", "32", "--width", "32", "--steps",
                           "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    pipe = build_pipeline(flux.CONTROLNET_IMAGE2IMAGE_BLOCKS, repos[32])
    pipe.update_components(controlnet=FluxControlNetModel.from_pretrained(folder))
    expected = pipe(prompt="a cat", control_image=Image.open(tmp_path / "edges.png").convert("RGB"),
                    image=Image.open(tmp_path / "start.png").convert("RGB"), strength=0.7, height=32, width=32,
                    num_inference_steps=3, generator=torch.Generator().manual_seed(0), output="images")[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))


@pytest.mark.parametrize("workflow", ["text2image", "image2image", "inpaint"])
def test_the_auto_preset_runs_each_controlnet_preset_and_without_a_control_image_the_plain_one(workflow, repos, nets):
    """``AUTO_BLOCKS`` with ``control_image`` draws what the ControlNet preset of the workflow the other images pick
    draws (those match diffusers' pipelines above), bitwise; without it, what the plain preset draws."""
    _, folder = nets["instantx"]
    images = {"text2image": {}, "image2image": dict(image=make_image(2, size=32), strength=0.8),
              "inpaint": dict(image=make_image(2, size=32), mask_image=make_mask(size=32), strength=0.8)}[workflow]
    presets = {"text2image": (flux.CONTROLNET_BLOCKS, flux.TEXT2IMAGE_BLOCKS),
               "image2image": (flux.CONTROLNET_IMAGE2IMAGE_BLOCKS, flux.IMAGE2IMAGE_BLOCKS),
               "inpaint": (flux.CONTROLNET_INPAINT_BLOCKS, flux.INPAINT_BLOCKS)}[workflow]
    control = dict(control_image=make_image(7, size=32), controlnet_conditioning_scale=0.6)

    def draw(blocks, **given):
        pipe = build_pipeline(blocks, repos[32])
        if "controlnet_input" in blocks:
            pipe.update_components(controlnet=FluxControlNetModel.from_pretrained(folder))
        return pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", height=32, width=32,
                    **images, **given, **CALL)

    auto = draw(flux.AUTO_BLOCKS, **control)
    assert torch.equal(auto, draw(presets[0], **control))
    assert torch.equal(draw(flux.AUTO_BLOCKS), draw(presets[1]))
