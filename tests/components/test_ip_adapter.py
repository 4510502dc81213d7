"""IP-Adapters in our UNet against diffusers' (test-only reference) on tiny random models and adapters.

Tolerance: max abs difference <= 1e-5 in float32 for the UNet forward (the same ops run in the same order;
in practice the outputs are bitwise equal). The state dict of a UNet with adapters loaded must equal
diffusers' key for key, which pins the key conventions (``to_k_ip``/``to_v_ip`` order, projection names).
"""

from types import SimpleNamespace

import pytest
import torch
from tiny_ip_adapter import ENCODER_WIDTH, ip_adapter_state_dict, save_ip_adapter

from diffblocks.components.ip_adapter import (
    cross_attention_layers,
    ip_adapter_count,
    load_ip_adapters,
    read_ip_adapter,
    set_ip_adapter_scale,
    unload_ip_adapters,
)
from diffblocks.components.models import AttnProcessor, UNet2DConditionModel
from diffblocks.components.models.ip_attention import IPAdapterAttnProcessor
from diffblocks.modular_pipelines.errors import AdapterError, ConfigError

diffusers = pytest.importorskip("diffusers")

ATOL = 1e-5
SD = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2,
    layers_per_block=2, sample_size=16, norm_num_groups=8,
)
SDXL = dict(
    block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
    attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 2, 3), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    layers_per_block=1, sample_size=16, norm_num_groups=8,
)
CONFIGS = {"sd": SD, "sdxl": SDXL}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def models(request, tmp_path_factory):
    """A diffusers UNet saved to disk, and random adapters for it (a dict of kind -> state dict)."""
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**CONFIGS[request.param]).eval()
    path = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(path)
    adapters = {"base": ip_adapter_state_dict(reference, "base", 1), "plus": ip_adapter_state_dict(reference, "plus", 2),
                "base2": ip_adapter_state_dict(reference, "base", 3)}
    return SimpleNamespace(name=request.param, path=path, adapters=adapters)


def fresh(models, ours=True):
    cls = UNet2DConditionModel if ours else diffusers.UNet2DConditionModel
    return cls.from_pretrained(models.path).eval()


def inputs(models, kinds, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    config = CONFIGS[models.name]
    sample = torch.randn(batch, 4, 16, 16, generator=gen)
    states = torch.randn(batch, 7, config["cross_attention_dim"], generator=gen)
    added = {}
    if models.name == "sdxl":
        added = {"text_embeds": torch.randn(batch, 32, generator=gen), "time_ids": torch.randn(batch, 6, generator=gen)}
    image_embeds = [torch.randn(batch, 1, 17, ENCODER_WIDTH, generator=gen) if kind == "plus"
                    else torch.randn(batch, 2, ENCODER_WIDTH, generator=gen) for kind in kinds]
    return sample, states, added, image_embeds


def run(unet, sample, states, added, image_embeds=None):
    added = dict(added, **({"image_embeds": image_embeds} if image_embeds is not None else {}))
    with torch.no_grad():
        return unet(sample, 10, states, added_cond_kwargs=added).sample


def checkpoints(models, kinds):
    return [read_ip_adapter(models.adapters[kind]) for kind in kinds]


def test_cross_attention_layers_follow_diffusers_processor_order(models):
    reference = fresh(models, ours=False)
    expected = [name[: -len(".processor")] for name in reference.attn_processors if not name.endswith("attn1.processor")]
    assert list(cross_attention_layers(fresh(models))) == expected


@pytest.mark.parametrize("kinds", [["base"], ["plus"], ["base", "plus"]], ids=["base", "plus", "base+plus"])
def test_loaded_adapters_match_diffusers(models, kinds):
    ours, reference = fresh(models), fresh(models, ours=False)
    load_ip_adapters(ours, checkpoints(models, kinds))
    reference._load_ip_adapter_weights([models.adapters[k] for k in kinds], low_cpu_mem_usage=False)
    got, expected = ours.state_dict(), reference.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[key], expected[key]) for key in got)
    assert ours.config.encoder_hid_dim_type == "ip_image_proj" and ip_adapter_count(ours) == len(kinds)
    sample, states, added, embeds = inputs(models, kinds)
    out = run(ours, sample, states, added, embeds)
    assert (out - run(reference, sample, states, added, embeds)).abs().max() <= ATOL
    assert (out - run(ours, sample, states, added)).abs().max() > 1e-3  # the adapters do act


def test_without_image_embeds_the_unet_ignores_the_adapter(models):
    plain, ours = fresh(models), fresh(models)
    load_ip_adapters(ours, checkpoints(models, ["base"]))
    sample, states, added, _ = inputs(models, [])
    assert torch.equal(run(ours, sample, states, added), run(plain, sample, states, added))


def test_scale_zero_for_one_adapter_leaves_the_other(models):
    both, second = fresh(models), fresh(models)
    load_ip_adapters(both, checkpoints(models, ["base", "base2"]))
    load_ip_adapters(second, checkpoints(models, ["base2"]))
    set_ip_adapter_scale(both, [0.0, 0.7])
    set_ip_adapter_scale(second, 0.7)
    sample, states, added, embeds = inputs(models, ["base", "base2"])
    assert torch.equal(run(both, sample, states, added, embeds), run(second, sample, states, added, embeds[1:]))


@pytest.mark.parametrize("kinds, scale", [(["base"], 0.5), (["plus"], 0.5), (["base", "plus"], [0.5, 0.25])],
                         ids=["base", "plus", "base+plus"])
def test_a_scale_of_one_half_matches_diffusers(models, kinds, scale):
    """The scale weighs each adapter's attention (``text + scale * image``): at 0.5 the output is diffusers'
    at 0.5, and neither the output at 1 nor the one without the adapter."""
    from diffusers.loaders.ip_adapter import IPAdapterMixin

    ours, reference = fresh(models), fresh(models, ours=False)
    load_ip_adapters(ours, checkpoints(models, kinds))
    reference._load_ip_adapter_weights([models.adapters[k] for k in kinds], low_cpu_mem_usage=False)
    sample, states, added, embeds = inputs(models, kinds)
    full = run(ours, sample, states, added, embeds)
    set_ip_adapter_scale(ours, scale)
    IPAdapterMixin.set_ip_adapter_scale(SimpleNamespace(unet=reference), scale)
    half = run(ours, sample, states, added, embeds)
    assert (half - run(reference, sample, states, added, embeds)).abs().max() <= ATOL
    assert (half - full).abs().max() > 1e-3
    assert (half - run(ours, sample, states, added)).abs().max() > 1e-3


def test_unload_restores_processors_and_config(models):
    plain, ours = fresh(models), fresh(models)
    custom = AttnProcessor()
    layer = next(iter(cross_attention_layers(ours).values()))
    layer.set_processor(custom)
    load_ip_adapters(ours, checkpoints(models, ["plus"]))
    load_ip_adapters(ours, checkpoints(models, ["base"]))  # a second load replaces the first
    assert ip_adapter_count(ours) == 1
    unload_ip_adapters(ours)
    assert layer.processor is custom
    assert not any(isinstance(p, IPAdapterAttnProcessor) for p in ours.attn_processors.values())
    assert ours.encoder_hid_proj is None and ours.config.encoder_hid_dim_type is None
    assert set(ours.state_dict()) == set(plain.state_dict())
    sample, states, added, _ = inputs(models, [])
    assert torch.equal(run(ours, sample, states, added), run(plain, sample, states, added))


def test_per_block_scales_match_diffusers(models):
    from diffusers.loaders.ip_adapter import IPAdapterMixin

    ours, reference = fresh(models), fresh(models, ours=False)
    load_ip_adapters(ours, checkpoints(models, ["base", "base2"]))
    reference._load_ip_adapter_weights([models.adapters["base"], models.adapters["base2"]], low_cpu_mem_usage=False)
    down = next(i for i, b in enumerate(ours.down_blocks) if hasattr(b, "attentions"))
    up, block = next((i, b) for i, b in enumerate(ours.up_blocks) if hasattr(b, "attentions"))
    scales = [{"down": {f"block_{down}": 0.5}, "up": {f"block_{up}": [0.0, 1.0] + [0.3] * (len(block.attentions) - 2)}},
              {"mid": 0.25, "up": 0.75}]
    set_ip_adapter_scale(ours, scales)
    IPAdapterMixin.set_ip_adapter_scale(SimpleNamespace(unet=reference), scales)
    got = {name: p.scale for name, p in ours.attn_processors.items() if isinstance(p, IPAdapterAttnProcessor)}
    expected = {name: p.scale for name, p in reference.attn_processors.items() if hasattr(p, "to_k_ip")}
    assert got == expected


def test_scale_errors_name_the_valid_choices(models):
    ours = fresh(models)
    with pytest.raises(AdapterError, match="no IP-Adapter is loaded"):
        set_ip_adapter_scale(ours, 0.5)
    load_ip_adapters(ours, checkpoints(models, ["base"]))
    with pytest.raises(ConfigError, match="use 'down', 'mid' and 'up'"):
        set_ip_adapter_scale(ours, {"middle": 1.0})
    with pytest.raises(ConfigError, match="blocks with attention"):
        set_ip_adapter_scale(ours, {"down": {"block_9": 1.0}})
    up = next(i for i, b in enumerate(ours.up_blocks) if hasattr(b, "attentions"))
    with pytest.raises(ConfigError, match="transformer layers, got 5 values"):
        set_ip_adapter_scale(ours, {"up": {f"block_{up}": [1.0] * 5}})
    with pytest.raises(AdapterError, match="3 scales for 1 loaded"):
        set_ip_adapter_scale(ours, [0.1, 0.2, 0.3])


def test_bin_and_safetensors_read_the_same(models, tmp_path):
    state = models.adapters["plus"]
    a = read_ip_adapter(save_ip_adapter(state, tmp_path / "a.bin").parent, "a.bin")
    b = read_ip_adapter(tmp_path, save_ip_adapter(state, tmp_path / "sub" / "b.safetensors").name, subfolder="sub")
    for group in ("image_proj", "ip_adapter"):
        assert getattr(a, group).keys() == getattr(b, group).keys() == state[group].keys()
        assert all(torch.equal(getattr(a, group)[k], getattr(b, group)[k]) for k in state[group])
    assert a.kind == b.kind == "plus" and a.num_tokens == 8


def test_wrong_layouts_name_the_expected_keys(models, tmp_path):
    torch.save({"unet.weight": torch.zeros(1)}, tmp_path / "lora.bin")
    with pytest.raises(AdapterError, match=r"expected keys image_proj\.\*, ip_adapter\.\*, found unet\.weight"):
        read_ip_adapter(tmp_path, "lora.bin")
    face_id = {"image_proj": {"proj.0.weight": torch.zeros(2, 2), "norm.weight": torch.zeros(2)},
               "ip_adapter": models.adapters["base"]["ip_adapter"]}
    save_ip_adapter(face_id, tmp_path / "faceid.safetensors")
    with pytest.raises(AdapterError) as err:
        read_ip_adapter(tmp_path, "faceid.safetensors")
    assert "image_proj.proj.weight" in str(err.value) and "image_proj.latents" in str(err.value)
    assert "found image_proj.norm.weight, image_proj.proj.0.weight" in str(err.value)


def test_an_adapter_for_another_unet_is_refused(models):
    other = "sdxl" if models.name == "sd" else "sd"
    torch.manual_seed(0)
    foreign = ip_adapter_state_dict(diffusers.UNet2DConditionModel(**CONFIGS[other]), "base")
    ours = fresh(models)
    load_ip_adapters(ours, checkpoints(models, ["base"]))
    sample, states, added, embeds = inputs(models, ["base"])
    before = run(ours, sample, states, added, embeds)
    with pytest.raises(AdapterError, match=r"does not fit this UNet: it has to_k_ip/to_v_ip weights for \d+ cross"):
        load_ip_adapters(ours, [read_ip_adapter(foreign)])
    assert torch.equal(run(ours, sample, states, added, embeds), before)  # the failed load changed nothing


def test_a_text_projection_stays_applied_under_the_adapter(tmp_path):
    """UNets with ``encoder_hid_dim_type="text_proj"`` keep projecting the text states (diffusers' Kolors case)."""
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**dict(SD, encoder_hid_dim=24)).eval()
    reference.save_pretrained(tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    state = ip_adapter_state_dict(reference, "base", 1)
    load_ip_adapters(ours, [read_ip_adapter(state)])
    reference._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
    gen = torch.Generator().manual_seed(0)
    sample, states = torch.randn(2, 4, 16, 16, generator=gen), torch.randn(2, 7, 24, generator=gen)
    embeds = [torch.randn(2, 1, ENCODER_WIDTH, generator=gen)]
    assert (run(ours, sample, states, {}, embeds) - run(reference, sample, states, {}, embeds)).abs().max() <= ATOL
    unload_ip_adapters(ours)
    assert ours.config.encoder_hid_dim_type == "text_proj" and isinstance(ours.encoder_hid_proj, torch.nn.Linear)
    plain = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    assert torch.equal(run(ours, sample, states, {}), run(plain, sample, states, {}))
