"""XLabs' FLUX.1 IP-Adapter against diffusers' FluxPipeline.load_ip_adapter on a tiny transformer and CLIP vision
model, the adapter file written in XLabs' layout. Tolerance: max abs difference <= 1e-4 on output_type="pt"
(float32, CPU)."""

import pytest
import torch
from safetensors.torch import save_file
from tiny_flux import assert_close, make_flux_repo, reference_controlnet
from tiny_models import build_pipeline, make_image

from diffblocks.components.errors import AdapterError, BlockExecutionError
from diffblocks.guiders import ClassifierFreeGuidance
from diffblocks.presets import flux

TOL = 1e-4
CALL = dict(num_inference_steps=3, height=32, width=32, max_sequence_length=16, output_type="pt")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """``(FLUX repo, adapter folder, image encoder folder)``: the adapter makes 4 tokens of the transformer's text
    width (32) from a 16-wide CLIP image embedding; its keys and values are 32 wide, the transformer's."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("flux_ip")
    repo = make_flux_repo(root / "flux", dev=True)
    torch.manual_seed(3)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=24, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
        projection_dim=16)).eval().save_pretrained(root / "image_encoder")
    weights = {"ip_adapter_proj_model.proj.weight": torch.randn(4 * 32, 16) * 0.2,
               "ip_adapter_proj_model.proj.bias": torch.randn(4 * 32) * 0.1,
               "ip_adapter_proj_model.norm.weight": 1 + torch.randn(32) * 0.1,
               "ip_adapter_proj_model.norm.bias": torch.randn(32) * 0.1}
    for kind in ("k", "v"):
        weights[f"double_blocks.0.processor.ip_adapter_double_stream_{kind}_proj.weight"] = torch.randn(32, 32) * 0.3
        weights[f"double_blocks.0.processor.ip_adapter_double_stream_{kind}_proj.bias"] = torch.randn(32) * 0.1
    (root / "adapter").mkdir()
    save_file(weights, str(root / "adapter" / "ip_adapter.safetensors"))
    return repo, root / "adapter", root / "image_encoder"


def diffusers_pipe(setup, scale: float):
    import diffusers

    repo, adapter, encoder = setup
    pipe = diffusers.FluxPipeline.from_pretrained(repo)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(adapter), weight_name="ip_adapter.safetensors",
                         image_encoder_pretrained_model_name_or_path=str(encoder), image_encoder_dtype=torch.float32)
    pipe.set_ip_adapter_scale(scale)
    return pipe


def ours(setup, scale: float, guider_scale: float | None = None):
    from transformers import CLIPVisionModelWithProjection

    repo, adapter, encoder = setup
    pipe = build_pipeline(flux.IP_ADAPTER_BLOCKS, repo)
    pipe.loader.load_ip_adapter(str(adapter), weight_name="ip_adapter.safetensors",
                                image_encoder=CLIPVisionModelWithProjection.from_pretrained(encoder))
    pipe.loader.set_ip_adapter_scale(scale)
    if guider_scale is not None:
        pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=guider_scale))
    return pipe



def test_an_xlabs_adapter_matches_diffusers(setup):
    image = make_image(5)
    expected = diffusers_pipe(setup, 0.7)("a cat", ip_adapter_image=image, generator=torch.Generator().manual_seed(0),
                                          **CALL).images
    got = ours(setup, 0.7)(prompt="a cat", ip_adapter_image=image, generator=torch.Generator().manual_seed(0),
                           output="images", **CALL)
    assert_close(got, expected)
    plain = build_pipeline(flux.TEXT2IMAGE_BLOCKS, setup[0])(prompt="a cat", generator=torch.Generator().manual_seed(0),
                                                            output="images", **CALL)
    assert (got - plain).abs().max().item() > 10 * TOL  # the adapter changes the image


def test_true_cfg_reads_a_black_image_on_the_negative_branch(setup):
    image = make_image(5)
    call = dict(negative_prompt="blurry", num_images_per_prompt=2, **CALL)
    expected = diffusers_pipe(setup, 1.0)("a cat", ip_adapter_image=image, true_cfg_scale=2.0,
                                          generator=torch.Generator().manual_seed(0), **call).images
    got = ours(setup, 1.0, guider_scale=2.0)(prompt="a cat", ip_adapter_image=image, output="images",
                                             generator=torch.Generator().manual_seed(0), **call)
    assert got.shape[0] == 2
    assert_close(got, expected)


def test_unloading_gives_the_plain_transformer_back(setup):
    pipe = ours(setup, 1.0)
    pipe.loader.unload_ip_adapter()
    got = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **CALL)
    plain = build_pipeline(flux.TEXT2IMAGE_BLOCKS, setup[0])(prompt="a cat", generator=torch.Generator().manual_seed(0),
                                                            output="images", **CALL)
    assert torch.equal(got, plain)
    with pytest.raises(BlockExecutionError, match="no IP-Adapter is loaded in the transformer"):
        pipe(prompt="a cat", ip_adapter_image=make_image(5), **CALL)
    with pytest.raises(AdapterError, match="no IP-Adapter is loaded in the transformer"):
        pipe.loader.set_ip_adapter_scale(0.5)


def test_the_cli_runs_an_xlabs_adapter_with_its_encoder_named(setup, tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from test_cli import assert_one_line_error, run_cli

    repo, adapter, encoder = setup
    make_image(5).save(tmp_path / "style.png")
    common = ["run", "--prompt", "a cat", "--preset", "flux-ip-adapter", "--model", str(repo), "--height", "32",
              "--width", "32", "--steps", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"),
              "--ip-adapter", str(adapter / "ip_adapter.safetensors"), "--ip-adapter-image", str(tmp_path / "style.png"),
              "--ip-adapter-scale", "0.7"]
    code, _, err = run_cli(capsys, *common)
    assert_one_line_error(code, err, "no image encoder beside it", "or give --ip-adapter-encoder")
    code, _, err = run_cli(capsys, *common, "--ip-adapter-encoder", str(encoder))
    assert code == 0, err
    expected = ours(setup, 0.7)(prompt="a cat", ip_adapter_image=Image.open(tmp_path / "style.png").convert("RGB"),
                                num_inference_steps=3, height=32, width=32, generator=torch.Generator().manual_seed(0),
                                output="images")[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(expected))


def test_the_flux_ip_adapter_node_equals_the_pipeline(setup, tmp_path):
    """LoadFluxIPAdapter on a LoadComponents bundle, into preset:flux-ip-adapter: the pipeline's images bitwise; the
    bundle it was given keeps its plain transformer (the node adapts a weight-sharing copy)."""
    from node_workflows import link

    from diffblocks.components.errors.nodes import NodeRunError
    from diffblocks.nodes import ArtifactStore, Executor

    repo, adapter, encoder = setup
    store = ArtifactStore(tmp_path / "artifacts")
    image = make_image(5)
    workflow = {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": str(repo)}},
        "ip": {"type": "LoadFluxIPAdapter", "inputs": {"components": link("load", "components"), "repo": str(adapter),
                                                       "weight_name": "ip_adapter.safetensors",
                                                       "image_encoder": str(encoder), "scale": 0.7}},
        "style": {"type": "LoadImage", "inputs": {"image": {"artifact": store.put_image(image)}}},
        "run": {"type": "preset:flux-ip-adapter", "inputs": {
            "components": link("ip", "components"), "ip_adapter_image": link("style", "image"), "prompt": "a cat",
            "seed": 0, "num_inference_steps": 3, "height": 32, "width": 32, "max_sequence_length": 16,
            "output_type": "pt"}}}}
    executor = Executor(artifacts=store)
    outputs = executor.run(workflow)
    expected = ours(setup, 0.7)(prompt="a cat", ip_adapter_image=store.open_image(workflow["nodes"]["style"]["inputs"]
                                                                                  ["image"]["artifact"]),
                                generator=torch.Generator().manual_seed(0), output="images", **CALL)
    assert torch.equal(outputs["run"]["images"], expected)
    later = {"load": workflow["nodes"]["load"], "plain": {"type": "preset:flux-text2image", "inputs": {
        **{k: v for k, v in workflow["nodes"]["run"]["inputs"].items() if k != "ip_adapter_image"},
        "components": link("load", "components")}}}
    plain = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)(prompt="a cat", generator=torch.Generator().manual_seed(0),
                                                         output="images", **CALL)
    assert torch.equal(executor.run({"nodes": later})["plain"]["images"], plain)  # the cached bundle, unadapted
    sd_bundle = {"nodes": {**workflow["nodes"], "ip": {**workflow["nodes"]["ip"], "type": "LoadIPAdapter"}}}
    with pytest.raises(NodeRunError, match=r"the bundle has no unet \(UNet2DConditionModel\)"):
        Executor(artifacts=store).run(sd_bundle)


def test_the_auto_preset_runs_an_adapter_and_a_controlnet_together_as_diffusers_does(setup, tmp_path):
    """``AUTO_BLOCKS`` with an XLabs adapter loaded and a ControlNet: ``ip_adapter_image`` and ``control_image``
    together draw what diffusers' FluxControlNetPipeline with the same adapter draws."""
    import diffusers
    from transformers import CLIPVisionModelWithProjection

    from diffblocks.components import FluxControlNetModel

    repo, adapter, encoder = setup
    reference = reference_controlnet(tmp_path / "controlnet")  # InstantX's kind
    call = dict(ip_adapter_image=make_image(5), control_image=make_image(7), controlnet_conditioning_scale=0.8,
                guidance_scale=3.5, **CALL)
    theirs = diffusers.FluxControlNetPipeline.from_pretrained(repo, controlnet=reference)
    theirs.set_progress_bar_config(disable=True)
    theirs.load_ip_adapter(str(adapter), weight_name="ip_adapter.safetensors",
                           image_encoder_pretrained_model_name_or_path=str(encoder), image_encoder_dtype=torch.float32)
    theirs.set_ip_adapter_scale(0.7)
    expected = theirs("a cat", generator=torch.Generator().manual_seed(0), **call).images
    pipe = build_pipeline(flux.AUTO_BLOCKS, repo)
    pipe.update_components(controlnet=FluxControlNetModel.from_pretrained(tmp_path / "controlnet"))
    pipe.loader.load_ip_adapter(str(adapter), weight_name="ip_adapter.safetensors",
                                image_encoder=CLIPVisionModelWithProjection.from_pretrained(encoder))
    pipe.loader.set_ip_adapter_scale(0.7)
    got = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **call)
    assert_close(got, expected)
    without = dict(call, ip_adapter_image=None)
    assert (got - pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **without)).abs().max() > 1e-3
