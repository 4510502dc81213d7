"""ControlNetModel and MultiControlNetModel against diffusers (test-only reference) on tiny random models.

Tolerance: max abs difference <= 1e-5 in float32 (the implementations run the same ops in the same order;
in practice the residuals are bitwise equal).
"""

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.models.attention import AttnProcessor  # noqa: E402
from diffblocks.components.models.controlnet import (  # noqa: E402
    ControlNetModel,
    ControlNetOutput,
    MultiControlNetModel,
)
from diffblocks.components.models.unet_2d_condition import UNet2DConditionModel  # noqa: E402
from diffblocks.modular_pipelines.errors import AdapterError, ConfigError, MissingInputError  # noqa: E402

ATOL = 1e-5

SD = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32,
    attention_head_dim=2, layers_per_block=2, conditioning_embedding_out_channels=(16, 32),
)
# SD 2.x-like, with the rarer switches: bgr control images, pooled residuals, a plain mid block, class labels.
SD2_VARIANTS = dict(
    SD, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), attention_head_dim=(2, 4),
    use_linear_projection=True, upcast_attention=True, layers_per_block=1, mid_block_type="UNetMidBlock2D",
    controlnet_conditioning_channel_order="bgr", global_pool_conditions=True, class_embed_type="projection",
    projection_class_embeddings_input_dim=16,
)
SDXL = dict(
    block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    cross_attention_dim=64, attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 2, 3),
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8, layers_per_block=1, conditioning_embedding_out_channels=(16, 32),
)
CONFIGS = {"sd": SD, "sd2_variants": SD2_VARIANTS, "sdxl": SDXL}
UNET_KEYS = ("block_out_channels", "down_block_types", "cross_attention_dim", "attention_head_dim", "layers_per_block",
             "transformer_layers_per_block", "use_linear_projection", "addition_embed_type", "addition_time_embed_dim",
             "projection_class_embeddings_input_dim")
UP_TYPES = {"DownBlock2D": "UpBlock2D", "CrossAttnDownBlock2D": "CrossAttnUpBlock2D"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its initial value (the zero convolutions included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


def make_inputs(config: dict, size: int = 8, batch: int = 2) -> dict:
    """Keyword inputs; the control image is twice the latents' size (one stride-2 stage in the embedding)."""
    gen = torch.Generator().manual_seed(1)
    inputs = dict(
        sample=torch.randn(batch, 4, size, size, generator=gen),
        timestep=torch.tensor([3.0, 999.0][:batch]),
        encoder_hidden_states=torch.randn(batch, 7, config["cross_attention_dim"], generator=gen),
        controlnet_cond=torch.rand(batch, 3, 2 * size, 2 * size, generator=gen),
    )
    if config.get("addition_embed_type") == "text_time":
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, 32, generator=gen),
            "time_ids": torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]] * batch),
        }
    if config.get("class_embed_type") == "projection":
        inputs["class_labels"] = torch.randn(batch, config["projection_class_embeddings_input_dim"], generator=gen)
    return inputs


def plain(config) -> dict:
    """A config as JSON values (tuples become lists), without the ``_``-prefixed metadata."""
    return json.loads(json.dumps({key: value for key, value in dict(config).items() if not key.startswith("_")}))


def max_diff(got, expected) -> float:
    """Largest difference between two residual outputs ``(down, mid)``."""
    (got_down, got_mid), (exp_down, exp_mid) = got, expected
    assert len(got_down) == len(exp_down)
    return max((a - b).abs().max().item() for a, b in zip([*got_down, got_mid], [*exp_down, exp_mid]))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(name, diffusers reference, ours loaded from the reference's save)."""
    torch.manual_seed(0)
    reference = perturb(diffusers.ControlNetModel(**CONFIGS[request.param]))
    path = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(path / "controlnet")
    return request.param, reference, ControlNetModel.from_pretrained(path, subfolder="controlnet")


def test_same_state_dict_keys_and_processors(pair):
    _, reference, ours = pair
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert list(ours.attn_processors) == list(reference.attn_processors)


@pytest.mark.parametrize("scale, guess_mode", [(1.0, False), (0.5, True)])
def test_forward_matches_diffusers(pair, scale, guess_mode):
    name, reference, ours = pair
    inputs = dict(make_inputs(CONFIGS[name]), conditioning_scale=scale, guess_mode=guess_mode, return_dict=False)
    with torch.no_grad():
        expected = reference(**inputs)
        got = ours(**inputs)
    assert isinstance(got, tuple) and isinstance(got[0], tuple)
    assert max_diff(got, expected) <= ATOL


@pytest.mark.parametrize("pair", ["sd"], indirect=True)  # the output type is shared: one config is enough
def test_output_object_and_scalar_timestep(pair):
    name, reference, ours = pair
    inputs = dict(make_inputs(CONFIGS[name], batch=1), timestep=500)
    with torch.no_grad():
        expected = reference(**inputs)
        got = ours(**inputs)
    assert isinstance(got, ControlNetOutput)
    down, mid = got  # unpacks like a tuple
    assert mid is got.mid_block_res_sample and down is got["down_block_res_samples"]
    assert max_diff(got, (expected.down_block_res_samples, expected.mid_block_res_sample)) <= ATOL


def test_diffusers_loads_what_we_save(pair, tmp_path):
    name, reference, ours = pair
    ours.save_pretrained(tmp_path)
    reloaded = diffusers.ControlNetModel.from_pretrained(tmp_path).eval()
    assert plain(reloaded.config) == plain(reference.config)
    inputs = dict(make_inputs(CONFIGS[name]), return_dict=False)
    with torch.no_grad():
        assert max_diff(ours(**inputs), reloaded(**inputs)) <= ATOL


def test_swapped_processor_is_used(pair):
    name, _, ours = pair
    calls = []

    class Recording(AttnProcessor):
        def __call__(self, attn, hidden_states, **kwargs):
            calls.append(hidden_states.shape)
            return super().__call__(attn, hidden_states, **kwargs)

    ours.set_attn_processor(Recording())
    try:
        with torch.no_grad():
            ours(**make_inputs(CONFIGS[name]))
    finally:
        ours.set_default_attn_processor()
    assert len(calls) == len(ours.attn_processors)


# --- from_unet ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sd", "sdxl"])
def test_from_unet_matches_diffusers(name, tmp_path):
    config = {key: value for key, value in CONFIGS[name].items() if key in UNET_KEYS}
    config["up_block_types"] = tuple(UP_TYPES[t] for t in reversed(config["down_block_types"]))
    torch.manual_seed(0)
    perturb(diffusers.UNet2DConditionModel(**config)).save_pretrained(tmp_path)
    reference_unet = diffusers.UNet2DConditionModel.from_pretrained(tmp_path)
    reference = diffusers.ControlNetModel.from_unet(reference_unet, conditioning_embedding_out_channels=(16, 32))
    ours = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(tmp_path), conditioning_embedding_out_channels=(16, 32))

    assert plain(ours.config) == plain(reference.config)
    expected = reference.state_dict()
    assert set(ours.state_dict()) == set(expected)
    # The control-image encoder's first convolutions are freshly random in both; everything else is copied
    # from the UNet or zero.
    random = [key for key in expected if key.startswith(("controlnet_cond_embedding.conv_in", "controlnet_cond_embedding.blocks"))]
    ours.load_state_dict({key: expected[key] for key in random}, strict=False)
    for key, tensor in ours.state_dict().items():
        assert torch.equal(tensor, expected[key]), key


def test_from_unet_without_weights_keeps_fresh_ones(tmp_path):
    config = {key: value for key, value in SD.items() if key in UNET_KEYS}
    unet = UNet2DConditionModel(up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **config)
    controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False, conditioning_embedding_out_channels=(16, 32))
    assert not torch.equal(controlnet.conv_in.weight, unet.conv_in.weight)
    assert all(torch.count_nonzero(p) == 0 for p in controlnet.controlnet_down_blocks.parameters())


# --- MultiControlNetModel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_pair(tmp_path_factory):
    """(diffusers MultiControlNetModel, ours) over two SD ControlNets with different weights."""
    path = tmp_path_factory.mktemp("multi")
    references = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        references.append(perturb(diffusers.ControlNetModel(**SD), seed=seed))
        references[-1].save_pretrained(path / f"net{seed}")
    ours = MultiControlNetModel([ControlNetModel.from_pretrained(path / f"net{seed}") for seed in (0, 1)])
    return diffusers.models.controlnets.MultiControlNetModel(references), ours


@pytest.mark.parametrize("guess_mode", [False, True])
def test_multi_sums_match_diffusers(multi_pair, guess_mode):
    reference, ours = multi_pair
    inputs = make_inputs(SD)
    inputs["controlnet_cond"] = [inputs["controlnet_cond"], inputs["controlnet_cond"].flip(-1)]
    inputs.update(conditioning_scale=[0.5, 1.0], guess_mode=guess_mode)
    with torch.no_grad():
        expected = reference(**inputs, return_dict=False)
        got = ours(**inputs)
    assert isinstance(got, ControlNetOutput)
    assert max_diff(got, expected) <= ATOL


def test_multi_save_and_load(multi_pair, tmp_path):
    reference, ours = multi_pair
    folders = ours.save_pretrained(tmp_path / "cn")
    assert [f.name for f in folders] == ["cn", "cn_1"]
    reloaded = MultiControlNetModel.from_pretrained(str(tmp_path / "cn"))
    theirs = diffusers.models.controlnets.MultiControlNetModel.from_pretrained(str(tmp_path / "cn"))
    assert len(reloaded.nets) == len(theirs.nets) == 2
    for net, their_net, original in zip(reloaded.nets, theirs.nets, ours.nets):
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), original.state_dict().values()))
        assert set(their_net.state_dict()) == set(net.state_dict())


def test_multi_checks_one_entry_per_net(multi_pair):
    _, ours = multi_pair
    inputs = make_inputs(SD)
    with pytest.raises(AdapterError, match="2 ControlNets; controlnet_cond has 1 entries"):
        ours(**dict(inputs, controlnet_cond=[inputs["controlnet_cond"]]))
    with pytest.raises(AdapterError, match="conditioning_scale has 3 entries"):
        ours(**dict(inputs, controlnet_cond=[inputs["controlnet_cond"]] * 2), conditioning_scale=[1.0] * 3)
    with pytest.raises(AdapterError, match="a list of 2 tensors, got one tensor"):
        ours(**inputs)
    with pytest.raises(AdapterError, match="at least one"):
        MultiControlNetModel([])


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    (dict(addition_embed_type="text"), "addition_embed_type"),
    (dict(controlnet_conditioning_channel_order="rbg"), "controlnet_conditioning_channel_order"),
    (dict(block_out_channels=(32, 64, 64)), "block_out_channels"),
    (dict(attention_head_dim=(2, 2, 2)), "attention_head_dim"),
    (dict(down_block_types=("CrossAttnDownBlock2D", "SimpleDownBlock2D")), "down_block_types"),
])
def test_unsupported_configs_raise(override, key):
    with pytest.raises(ConfigError, match=f"ControlNetModel: config '{key}'"):
        ControlNetModel(**dict(SD, **override))


def test_missing_inputs_raise():
    controlnet = ControlNetModel(**SDXL)
    inputs = make_inputs(SDXL)
    with pytest.raises(MissingInputError, match=r"ControlNetModel .* needs added_cond_kwargs \['time_ids'\]"):
        controlnet(**dict(inputs, added_cond_kwargs={"text_embeds": inputs["added_cond_kwargs"]["text_embeds"]}))
    with pytest.raises(ConfigError, match="timestep_cond=None"):
        controlnet(**inputs, timestep_cond=torch.zeros(2, 4))
