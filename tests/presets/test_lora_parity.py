"""LoRA on the SD 1.5 and SDXL presets against diffusers + peft, on tiny random LoRAs of each layout.

Tolerance: max abs difference <= 1e-4 on output_type="pt" images (float32, CPU); "bitwise" cases compare with
torch.equal. Reference: diffusers' ``load_lora_weights`` / ``set_adapters`` / ``fuse_lora`` on the same state dict.
"""

from types import SimpleNamespace

import pytest
import torch
from tiny_lora import make_lora
from tiny_models import build_pipeline

from diffblocks.components.errors import LoraError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
FAMILIES = {"sd": SimpleNamespace(preset=stable_diffusion, ref="StableDiffusionPipeline", repo="sd_repo"),
            "sdxl": SimpleNamespace(preset=stable_diffusion_xl, ref="StableDiffusionXLPipeline", repo="sdxl_repo")}


class Pair:
    """Our pipeline and diffusers' on the same tiny repo, and their images for the same call."""

    def __init__(self, family, repo):
        import diffusers

        self.ours = build_pipeline(FAMILIES[family].preset.TEXT2IMAGE_BLOCKS, repo)
        self.ref = getattr(diffusers, FAMILIES[family].ref).from_pretrained(repo)
        self.ref.set_progress_bar_config(disable=True)
        self.base = self.image()

    def image(self):
        return self.ours(prompt="a cat", num_inference_steps=2, height=32, width=32, output_type="pt",
                         generator=torch.Generator().manual_seed(0), output="images")

    def ref_image(self):
        return self.ref("a cat", num_inference_steps=2, height=32, width=32, output_type="pt", guidance_scale=7.5,
                        generator=torch.Generator().manual_seed(0)).images

    def load(self, state_dict, name):
        self.ours.loader.load_lora_weights(dict(state_dict), adapter_name=name)
        self.ref.load_lora_weights(dict(state_dict), adapter_name=name)

    def assert_match(self):
        a, b = self.image(), self.ref_image()
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"max abs diff {diff}"
        return a

    def reset(self):
        self.ours.loader.unload_lora_weights()
        self.ref.unload_lora_weights()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module")
def pair(request):
    return Pair(request.param, request.getfixturevalue(FAMILIES[request.param].repo))


@pytest.fixture
def sd(request):
    return Pair("sd", request.getfixturevalue("sd_repo"))


CASES = [("sd", "peft"), ("sd", "old"), ("sd", "kohya"), ("sdxl", "peft"), ("sdxl", "kohya"), ("sdxl", "sgm")]


@pytest.mark.parametrize("pair, layout", CASES, indirect=["pair"])
def test_each_layout_matches_diffusers_at_scales_1_and_half(pair, layout):
    alpha = 2.0 if layout in ("kohya", "sgm") else None  # alpha != rank: scale alpha / rank
    pair.load(make_lora(pair.ref, layout, seed=1, alpha=alpha), "style")
    try:
        with_lora = pair.assert_match()
        assert (with_lora - pair.base).abs().max() > 1e-2  # the LoRA does change the image
        pair.ours.loader.set_adapters("style", 0.5)
        pair.ref.set_adapters("style", 0.5)
        pair.assert_match()
    finally:
        pair.reset()
    assert torch.equal(pair.image(), pair.base)


def test_scale_zero_and_disabled_are_bitwise_no_lora(sd):
    sd.ours.loader.load_lora_weights(make_lora(sd.ref, "peft", seed=1), adapter_name="style")
    with_lora = sd.image()
    with pytest.raises(LoraError, match=r"no LoRA adapter named styel \(did you mean style\?\); loaded: style"):
        sd.ours.loader.set_adapters("styel", 0.5)
    sd.ours.loader.set_adapters(["style"], [0.0])
    assert torch.equal(sd.image(), sd.base)
    sd.ours.loader.set_adapters(["style"], [1.0])
    sd.ours.loader.disable_lora()
    assert torch.equal(sd.image(), sd.base)
    sd.ours.loader.enable_lora()
    assert torch.equal(sd.image(), with_lora)


def test_two_adapters_with_weights_match_diffusers(sd):
    first, second = make_lora(sd.ref, "peft", seed=1), make_lora(sd.ref, "kohya", seed=2, rank=2)
    sd.load(first, "a")
    sd.load(second, "b")
    assert sd.ours.loader.get_active_adapters() == ["b"]  # the last loaded, as diffusers (when layers agree)
    sd.ours.loader.set_adapters(["a", "b"], [0.7, 0.4])
    sd.ref.set_adapters(["a", "b"], [0.7, 0.4])
    assert sd.ours.loader.get_active_adapters() == ["a", "b"]
    sd.assert_match()
    per_component = [{"unet": 0.5, "text_encoder": 1.0}, {"unet": 1.0, "text_encoder": 0.25}]
    sd.ours.loader.set_adapters(["a", "b"], per_component)
    sd.ref.set_adapters(["a", "b"], per_component)
    sd.assert_match()
    assert sd.ours.loader.get_list_adapters() == {"unet": ["a", "b"], "text_encoder": ["a", "b"]}


def test_fused_equals_unfused_and_diffusers_fused_and_unfuses_exactly(sd):
    sd.load(make_lora(sd.ref, "kohya", seed=3), "a")
    sd.ours.loader.set_adapters("a", 0.8)
    sd.ref.set_adapters("a", 0.8)
    unfused = sd.image()
    sd.ours.loader.fuse_lora(lora_scale=1.0)
    sd.ref.fuse_lora(lora_scale=1.0)
    fused = sd.assert_match()
    assert (fused - unfused).abs().max().item() <= TOL
    sd.ours.loader.unfuse_lora()
    assert torch.equal(sd.image(), unfused)
    sd.ours.loader.fuse_lora(lora_scale=0.5)  # lora_scale multiplies the adapter weights
    sd.ours.loader.unfuse_lora()
    sd.ours.loader.set_adapters("a", 0.4)
    half = sd.image()
    sd.ours.loader.set_adapters("a", 0.8)
    sd.ours.loader.fuse_lora(lora_scale=0.5)
    assert (sd.image() - half).abs().max().item() <= TOL


def test_unload_gives_back_the_original_modules_and_tensors(sd):
    unet, encoder = sd.ours.components["unet"], sd.ours.components["text_encoder"]
    before = {m: dict(model.named_modules()) for m, model in (("unet", unet), ("te", encoder))}
    tensors = {m: {n: p for n, p in model.state_dict(keep_vars=True).items()} for m, model in (("unet", unet), ("te", encoder))}
    sd.ours.loader.load_lora_weights(make_lora(sd.ref, "peft", seed=1), adapter_name="a")
    sd.ours.loader.load_lora_weights(make_lora(sd.ref, "kohya", seed=2), adapter_name="b")
    sd.ours.loader.set_adapters(["a", "b"], [1.0, 0.5])
    sd.ours.loader.fuse_lora()
    sd.ours.loader.unload_lora_weights()
    for m, model in (("unet", unet), ("te", encoder)):
        after = dict(model.named_modules())
        assert after.keys() == before[m].keys() and all(after[n] is before[m][n] for n in after)
        assert all(p is tensors[m][n] for n, p in model.state_dict(keep_vars=True).items())
    assert torch.equal(sd.image(), sd.base)
    assert sd.ours.loader.get_list_adapters() == {} and sd.ours.loader.get_active_adapters() == []


@pytest.mark.parametrize("pair", ["sdxl"], indirect=True)
def test_a_lora_for_sd15_on_sdxl_is_one_error_and_changes_nothing(pair, sd_repo):
    import diffusers

    sd15 = make_lora(diffusers.StableDiffusionPipeline.from_pretrained(sd_repo), "kohya", seed=1)
    with pytest.raises(LoraError, match=r"key\(s\) do not fit this pipeline .*lora_unet_down_blocks_1_attentions_0_"):
        pair.ours.loader.load_lora_weights(sd15)
    assert pair.ours.loader.get_list_adapters() == {}
    assert torch.equal(pair.image(), pair.base)
