"""IP-Adapter workflows against diffusers' classic pipelines with ``load_ip_adapter`` of the same tiny adapters.

The pipelines are composed as in the design document: ``blocks.sub_blocks.insert("ip_adapter", <Auto IP-Adapter
step>, 0)`` into a preset-built SequentialPipelineBlocks. Tolerance: max abs difference <= 1e-4 on
output_type="pt" (float32, CPU; in practice the outputs are bitwise equal). Scale 0 gives the image without
an adapter.
"""

from types import SimpleNamespace

import pytest
import torch
from tiny_ip_adapter import make_ip_adapter_repo
from tiny_models import make_image

from diffblocks import SequentialPipelineBlocks
from diffblocks.blocks.stable_diffusion.ip_adapter import StableDiffusionAutoIPAdapterStep, StableDiffusionIPAdapterStep
from diffblocks.blocks.stable_diffusion_xl.ip_adapter import (
    StableDiffusionXLAutoIPAdapterStep,
    StableDiffusionXLIPAdapterStep,
)
from diffblocks.modular_pipelines.errors import AdapterError, BlockExecutionError
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

TOL = 1e-4
STEPS = 3
FAMILIES = {
    "sd": SimpleNamespace(preset=stable_diffusion, auto=StableDiffusionAutoIPAdapterStep,
                          step=StableDiffusionIPAdapterStep, ref="StableDiffusionPipeline", repo="sd_repo"),
    "sdxl": SimpleNamespace(preset=stable_diffusion_xl, auto=StableDiffusionXLAutoIPAdapterStep,
                            step=StableDiffusionXLIPAdapterStep, ref="StableDiffusionXLPipeline", repo="sdxl_repo"),
}
ADAPTERS = {"base": ["ip-adapter.bin"], "plus": ["ip-adapter-plus.safetensors"],
            "two": ["ip-adapter.bin", "ip-adapter-plus.safetensors"]}
KWARGS = dict(num_inference_steps=STEPS, output_type="pt")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module")
def adapters(request, tmp_path_factory):
    """Per family: (pipeline repo, IP-Adapter folder with image_encoder/ and three adapters)."""
    made = {}
    for family, fam in FAMILIES.items():
        repo = request.getfixturevalue(fam.repo)
        made[family] = (repo, make_ip_adapter_repo(tmp_path_factory.mktemp(f"ip_{family}"), repo))
    return made


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ours(family, repo, step=None):
    blocks = SequentialPipelineBlocks.from_blocks_dict(FAMILIES[family].preset.TEXT2IMAGE_BLOCKS)
    blocks.sub_blocks.insert("ip_adapter", step or FAMILIES[family].auto(), 0)
    pipe = blocks.init_pipeline(repo)
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images_for(weights):
    return make_image(1) if len(weights) == 1 else [make_image(1), make_image(2)]


def max_diff(a, b):
    assert a.shape == b.shape and not torch.isnan(a).any()
    return (a - b).abs().max().item()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ADAPTERS)
def test_matches_diffusers_and_scale_zero_is_no_adapter(adapters, family, kind):
    import diffusers

    repo, folder = adapters[family]
    weights = ADAPTERS[kind]
    pipe = ours(family, repo)
    plain = pipe(prompt="a cat", generator=gen(), output="images", **KWARGS)
    pipe.loader.load_ip_adapter(str(folder), subfolder="", weight_name=weights)
    image = images_for(weights)
    pipe.loader.set_ip_adapter_scale(0.0)
    assert max_diff(pipe(prompt="a cat", ip_adapter_image=image, generator=gen(), output="images", **KWARGS), plain) <= TOL
    pipe.loader.set_ip_adapter_scale(0.6)
    got = pipe(prompt="a cat", ip_adapter_image=image, generator=gen(), output="images", **KWARGS)
    reference = getattr(diffusers, FAMILIES[family].ref).from_pretrained(repo)
    reference.set_progress_bar_config(disable=True)
    reference.load_ip_adapter(str(folder), subfolder="", weight_name=weights)
    reference.set_ip_adapter_scale([0.6] * len(weights))  # diffusers wants one scale per adapter
    expected = reference("a cat", ip_adapter_image=image, generator=gen(), guidance_scale=7.5, **KWARGS).images
    assert max_diff(got, expected) <= TOL
    assert max_diff(got, plain) > 1e-3  # the adapter does act


@pytest.mark.parametrize("family", FAMILIES)
def test_composition_shows_the_ip_adapter_inputs_and_components(adapters, family):
    pipe = ours(family, adapters[family][0])
    shown = repr(pipe.blocks)
    assert "ip_adapter_image" in shown and "image_encoder" in shown and "feature_extractor" in shown
    assert {"image_encoder", "feature_extractor"} <= set(pipe.component_names)
    assert "ip_adapter_image" in pipe.blocks.input_names
    assert type(pipe.blocks.get_execution_blocks("ip_adapter_image").sub_blocks["ip_adapter"]) is FAMILIES[family].step


def test_loader_fills_image_encoder_and_sizes_the_feature_extractor(adapters):
    repo, folder = adapters["sd"]
    pipe = ours("sd", repo)
    assert pipe.image_encoder is None and pipe.feature_extractor.crop_size["height"] == 224
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin")
    assert pipe.image_encoder is not None and pipe.feature_extractor.crop_size["height"] == 32
    pipe.loader.unload_ip_adapter()
    assert pipe.image_encoder is None and pipe.unet.config.encoder_hid_dim_type is None


def test_unload_and_no_image_give_the_plain_image(adapters):
    repo, folder = adapters["sd"]
    pipe = ours("sd", repo)
    plain = pipe(prompt="a cat", generator=gen(), output="images", **KWARGS)
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin")
    assert max_diff(pipe(prompt="a cat", generator=gen(), output="images", **KWARGS), plain) == 0  # Auto step skipped
    pipe.loader.unload_ip_adapter()
    assert max_diff(pipe(prompt="a cat", generator=gen(), output="images", **KWARGS), plain) == 0


@pytest.mark.parametrize("kind", ["base", "plus"])
def test_precomputed_embeds_and_batches(adapters, kind):
    repo, folder = adapters["sd"]
    pipe = ours("sd", repo)
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name=ADAPTERS[kind])
    pipe.loader.set_ip_adapter_scale(0.6)
    state = pipe(prompt="a cat", ip_adapter_image=make_image(1), generator=gen(), **KWARGS)
    embeds = state.get("ip_adapter_embeds")
    assert len(embeds) == 1 and embeds[0].shape[:2] == (1, 1)
    again = pipe(prompt="a cat", ip_adapter_embeds=embeds, generator=gen(), output="images", **KWARGS)
    assert max_diff(again, state.get("images")) <= TOL  # negatives recomputed: zeros / the black image
    both = pipe(prompt=["a cat", "a dog"], num_images_per_prompt=2, ip_adapter_image=make_image(1),
                generator=[gen(i) for i in range(4)], **KWARGS)
    assert both.get("ip_adapter_embeds")[0].shape[0] == 4
    dog = pipe(prompt="a dog", ip_adapter_image=make_image(1), generator=gen(3), output="images", **KWARGS)
    assert max_diff(both.get("images")[3:], dog) <= TOL


def test_plain_step_at_position_zero_before_the_input_step(adapters):
    repo, folder = adapters["sdxl"]
    pipe = ours("sdxl", repo, step=StableDiffusionXLIPAdapterStep())
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin")
    state = pipe(prompt="a cat", ip_adapter_image=make_image(1), num_images_per_prompt=2, generator=[gen(0), gen(1)],
                 **KWARGS)
    assert state.get("ip_adapter_embeds")[0].shape[0] == state.get("prompt_embeds").shape[0] == 2


def test_missing_image_encoder_says_how_to_load_it(sd_repo, tmp_path):
    folder = make_ip_adapter_repo(tmp_path, sd_repo, with_encoder=False)
    pipe = ours("sd", sd_repo)
    with pytest.raises(AdapterError, match="no image encoder in .*image_encoder") as err:
        pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin")
    assert "image_encoder_folder=" in str(err.value) and "update_components(image_encoder=" in str(err.value)
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin", image_encoder_folder=None)
    with pytest.raises(BlockExecutionError, match="no image encoder .*update_components.*ip_adapter_embeds"):
        pipe(prompt="a cat", ip_adapter_image=make_image(1), **KWARGS)


def test_bad_checkpoint_and_missing_adapter_errors(adapters, tmp_path):
    repo, folder = adapters["sd"]
    pipe = ours("sd", repo)
    with pytest.raises(BlockExecutionError, match="ip_adapter_image .*was given but no IP-Adapter is loaded"):
        pipe(prompt="a cat", ip_adapter_image=make_image(1), **KWARGS)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "model.bin")
    with pytest.raises(AdapterError, match=r"expected keys image_proj\.\*, ip_adapter\.\*, found state_dict"):
        pipe.loader.load_ip_adapter(tmp_path, subfolder="", weight_name="model.bin")
    pipe.loader.load_ip_adapter(folder, subfolder="", weight_name="ip-adapter.bin")
    with pytest.raises(BlockExecutionError, match="2 entries for 1 loaded IP-Adapters|give one image"):
        pipe(prompt="a cat", ip_adapter_image=[make_image(1), [make_image(2)]], **KWARGS)
