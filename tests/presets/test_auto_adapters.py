"""``AUTO_BLOCKS`` with a ControlNet and an IP-Adapter, alone or together, and for inpainting, against diffusers'
classic ControlNet pipelines (``load_ip_adapter`` of the same tiny adapter) on the same tiny weights: the preset the
design document describes, where ``control_image`` and ``ip_adapter_image`` pick the steps that run. Tolerance:
max abs difference <= 1e-4 on output_type="pt" (float32, CPU)."""

from types import SimpleNamespace

import pytest
import torch
from tiny_ip_adapter import make_ip_adapter_repo
from tiny_models import build_pipeline, make_image, make_mask

from diffblocks import ComponentSpec
from diffblocks.components.models.controlnet import ControlNetModel
from diffblocks.modular_pipelines.errors import BlockExecutionError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
STEPS = 3
FAMILIES = {
    "sd": SimpleNamespace(preset=stable_diffusion, repo="sd_repo", classic="StableDiffusion{}Pipeline"),
    "sdxl": SimpleNamespace(preset=stable_diffusion_xl, repo="sdxl_repo", classic="StableDiffusionXL{}Pipeline"),
}
# what is given -> the diffusers pipeline that does the same
CASES = {
    "controlnet": ("ControlNet", dict(control_image=True)),
    "ip_adapter": ("", dict(ip_adapter_image=True)),
    "both": ("ControlNet", dict(control_image=True, ip_adapter_image=True)),
    "img2img_controlnet": ("ControlNetImg2Img", dict(control_image=True, image=True)),
    "inpaint_controlnet": ("ControlNetInpaint", dict(control_image=True, mask_image=True)),
}

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module")
def models(request, tmp_path_factory):
    """Per family: (pipeline repo, a tiny ControlNet folder, an IP-Adapter folder with its image encoder)."""
    import diffusers

    made = {}
    for family, fam in FAMILIES.items():
        repo = request.getfixturevalue(fam.repo)
        unet = diffusers.UNet2DConditionModel.from_pretrained(repo, subfolder="unet")
        torch.manual_seed(10)
        net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
        for p in net.parameters():  # from_unet zero-initialises the output convs: make them matter
            p.data += 0.05 * torch.randn_like(p)
        controlnet = tmp_path_factory.mktemp(f"cn_{family}")
        net.save_pretrained(controlnet)
        made[family] = (repo, controlnet, make_ip_adapter_repo(tmp_path_factory.mktemp(f"ip_{family}"), repo))
    return made


def inputs(given: dict) -> dict:
    """Our inputs for ``given``; diffusers' image-to-image and inpainting ControlNet pipelines name the control
    image alike, its text-to-image ControlNet pipelines call it ``image``."""
    values = dict(num_inference_steps=STEPS, output_type="pt", controlnet_conditioning_scale=0.7)
    if given.get("control_image"):
        values["control_image"] = make_image(7)
    if given.get("ip_adapter_image"):
        values["ip_adapter_image"] = make_image(1)
    if given.get("image") or given.get("mask_image"):
        values.update(image=make_image(3), strength=0.8)
    if given.get("mask_image"):
        values["mask_image"] = make_mask()
    if not given.get("control_image"):
        values.pop("controlnet_conditioning_scale")
    return values


def auto_pipeline(family, repo, controlnet, adapter):
    pipe = build_pipeline(FAMILIES[family].preset.AUTO_BLOCKS, repo)
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(controlnet)).load())
    pipe.loader.load_ip_adapter(str(adapter), subfolder="", weight_name="ip-adapter.bin")
    pipe.loader.set_ip_adapter_scale(0.6)
    return pipe


def classic_pipeline(family, kind, repo, controlnet, adapter, given):
    import diffusers

    extra = {"controlnet": diffusers.ControlNetModel.from_pretrained(controlnet)} if kind else {}
    ref = getattr(diffusers, FAMILIES[family].classic.format(kind)).from_pretrained(repo, **extra)
    if given.get("ip_adapter_image"):
        ref.load_ip_adapter(str(adapter), subfolder="", weight_name="ip-adapter.bin")
        ref.set_ip_adapter_scale(0.6)
    ref.set_progress_bar_config(disable=True)
    return ref


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", CASES)
def test_auto_preset_matches_the_classic_pipeline(models, family, case):
    kind, given = CASES[case]
    repo, controlnet, adapter = models[family]
    ours = auto_pipeline(family, repo, controlnet, adapter)(
        prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **inputs(given))
    values = inputs(given)
    if kind == "ControlNet":  # diffusers' text-to-image ControlNet pipelines take the control image as `image`
        values["image"] = values.pop("control_image")
    ref = classic_pipeline(family, kind, repo, controlnet, adapter, given)
    theirs = ref("a cat", guidance_scale=7.5, generator=torch.Generator().manual_seed(0), **values).images
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_the_adapters_only_act_when_their_image_is_given(models, family):
    """With no control image and no reference image the auto preset, ControlNet and IP-Adapter loaded, draws what
    text-to-image draws; each image given changes the result."""
    repo, controlnet, adapter = models[family]
    pipe = auto_pipeline(family, repo, controlnet, adapter)
    plain = build_pipeline(FAMILIES[family].preset.TEXT2IMAGE_BLOCKS, repo)

    def draw(target, **given):
        return target(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **inputs(given))

    nothing = draw(pipe)
    assert torch.equal(nothing, draw(plain))
    assert not torch.equal(nothing, draw(pipe, control_image=True))
    assert not torch.equal(nothing, draw(pipe, ip_adapter_image=True))


@pytest.mark.parametrize("preset, given, fix", [
    ("AUTO_BLOCKS", "control_image", "pipe.update_components(controlnet="),
    ("CONTROLNET_BLOCKS", "control_image", "pipe.update_components(controlnet="),
    ("AUTO_BLOCKS", "ip_adapter_image", "pipe.loader.load_ip_adapter("),
    ("IP_ADAPTER_BLOCKS", "ip_adapter_image", "pipe.loader.load_ip_adapter(")])
def test_an_adapters_image_with_no_adapter_loaded_says_how_to_load_it_before_any_block_runs(
        sd_repo, monkeypatch, preset, given, fix):
    import diffblocks.modular_pipelines.pipeline as pipeline

    pipe = build_pipeline(getattr(stable_diffusion, preset), sd_repo)
    ran = []
    monkeypatch.setattr(pipeline, "run_block", lambda *args: ran.append(args))
    with pytest.raises(BlockExecutionError, match="cannot run") as caught:
        pipe(prompt="a cat", num_inference_steps=STEPS, output="images", **{given: make_image(7)})
    assert fix in str(caught.value) and given.removesuffix("_image") in str(caught.value).split(" cannot run")[0]
    assert not ran
