"""UNet2DConditionModel against diffusers (test-only reference) on tiny random models.

Tolerance: max abs difference <= 1e-5 in float32 (the implementations run the same ops in the same order;
in practice the outputs are bitwise equal).
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.models import Attention, AttnProcessor, UNet2DConditionModel  # noqa: E402
from diffblocks.modular_pipelines.errors import ConfigError, MissingInputError  # noqa: E402

ATOL = 1e-5

SD1 = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2,
    layers_per_block=2, sample_size=16,
)
SD2 = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=48, attention_head_dim=(2, 4),
    use_linear_projection=True, upcast_attention=True, layers_per_block=1, sample_size=16,
)
SDXL = dict(
    block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
    attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 2, 3), use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    layers_per_block=1, sample_size=16,
)
INPAINT_LCM = dict(SD1, in_channels=9, layers_per_block=1, time_cond_proj_dim=16)
CONFIGS = {"sd1": SD1, "sd2": SD2, "sdxl": SDXL, "inpaint_lcm": INPAINT_LCM}


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Move every weight off its initial value so that a mis-mapped norm or bias shows up."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


def make_inputs(config: dict, size: int = 16, batch: int = 2) -> tuple[tuple, dict]:
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, config.get("in_channels", 4), size, size, generator=gen)
    states = torch.randn(batch, 7, config["cross_attention_dim"], generator=gen)
    kwargs = {}
    if config.get("addition_embed_type") == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, 32, generator=gen),
            "time_ids": torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]] * batch),
        }
    if config.get("time_cond_proj_dim"):
        kwargs["timestep_cond"] = torch.randn(batch, config["time_cond_proj_dim"], generator=gen)
    return (sample, torch.tensor([3.0, 999.0][:batch]), states), kwargs


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(name, diffusers reference, ours loaded from the reference's save)."""
    torch.manual_seed(0)
    reference = perturb(diffusers.UNet2DConditionModel(**CONFIGS[request.param]))
    path = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(path)
    return request.param, reference, UNet2DConditionModel.from_pretrained(path)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_same_state_dict_keys(pair):
    _, reference, ours = pair
    assert set(ours.state_dict()) == set(reference.state_dict())


def test_forward_matches_diffusers(pair):
    name, reference, ours = pair
    (sample, timesteps, states), kwargs = make_inputs(CONFIGS[name])
    with torch.no_grad():
        expected = reference(sample, timesteps, states, **kwargs).sample
        got = ours(sample, timesteps, states, **kwargs).sample
    assert max_diff(got, expected) <= ATOL


@pytest.mark.parametrize("pair", ["sd1"], indirect=True)
def test_scalar_timesteps_match_diffusers(pair):
    """Ints, floats and 0-d tensors (the timestep handling is shared, so one config is enough)."""
    name, reference, ours = pair
    (sample, _, states), _ = make_inputs(CONFIGS[name], batch=1)
    with torch.no_grad():
        for timestep in (500, 3.5, torch.tensor(10)):
            assert max_diff(ours(sample, timestep, states).sample, reference(sample, timestep, states).sample) <= ATOL


def test_odd_sizes_and_masks_match_diffusers(pair):
    name, reference, ours = pair
    # 18 is not a multiple of 2**upsamplers for the 3-level model: upsamplers get explicit output sizes.
    args, kwargs = make_inputs(CONFIGS[name], size=18)
    kwargs["encoder_attention_mask"] = torch.tensor([[1] * 5 + [0] * 2, [1] * 7])
    with torch.no_grad():
        assert max_diff(ours(*args, **kwargs).sample, reference(*args, **kwargs).sample) <= ATOL


def test_controlnet_residuals_match_diffusers(pair):
    name, reference, ours = pair
    args, kwargs = make_inputs(CONFIGS[name])
    shapes = _skip_shapes(ours, args[0])
    gen = torch.Generator().manual_seed(2)
    down = [torch.randn(shape, generator=gen) for shape in shapes[:-1]]
    mid = torch.randn(shapes[-1], generator=gen)
    extra = dict(kwargs, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    with torch.no_grad():
        assert max_diff(ours(*args, **extra).sample, reference(*args, **extra).sample) <= ATOL


def _skip_shapes(unet, sample):
    """Shapes of the skip connections and (last) of the mid-block output."""
    shapes = [(sample.shape[0], unet.config.block_out_channels[0]) + tuple(sample.shape[-2:])]
    size = sample.shape[-1]
    for i, block in enumerate(unet.down_blocks):
        channels = unet.config.block_out_channels[i]
        shapes += [(sample.shape[0], channels, size, size)] * len(block.resnets)
        if block.downsamplers is not None:
            size = (size + 1) // 2
            shapes.append((sample.shape[0], channels, size, size))
    shapes.append((sample.shape[0], unet.config.block_out_channels[-1], size, size))
    return shapes


def test_diffusers_loads_what_we_save(pair, tmp_path):
    name, reference, ours = pair
    ours.save_pretrained(tmp_path)
    reloaded = diffusers.UNet2DConditionModel.from_pretrained(tmp_path).eval()
    args, kwargs = make_inputs(CONFIGS[name])
    with torch.no_grad():
        assert max_diff(reloaded(*args, **kwargs).sample, reference(*args, **kwargs).sample) <= ATOL


def test_config_dtype_device_and_tuple_output(pair):
    name, _, ours = pair
    assert ours.config.in_channels == CONFIGS[name].get("in_channels", 4)
    assert ours.config["addition_time_embed_dim"] == CONFIGS[name].get("addition_time_embed_dim")
    assert ours.config.time_cond_proj_dim == CONFIGS[name].get("time_cond_proj_dim")
    assert ours.dtype == torch.float32 and ours.device.type == "cpu"
    args, kwargs = make_inputs(CONFIGS[name])
    with torch.no_grad():
        out = ours(*args, return_dict=False, **kwargs)
    assert isinstance(out, tuple) and out[0].shape == args[0].shape[:1] + (4,) + args[0].shape[2:]


def test_attn_processors_are_named_like_diffusers(pair):
    _, reference, ours = pair
    assert list(ours.attn_processors) == list(reference.attn_processors)
    if "mid_block.attentions.0.transformer_blocks.0.attn1.processor" in ours.attn_processors:
        layer = ours.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn1")
        assert isinstance(layer, Attention) and not layer.is_cross_attention
        assert isinstance(layer.to_out, torch.nn.ModuleList) and isinstance(layer.to_out[0], torch.nn.Linear)


class RecordingProcessor(AttnProcessor):
    def __init__(self):
        self.seen = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, tag=None):
        self.seen.append(tag)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)


def test_set_attn_processor_and_cross_attention_kwargs():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD1).eval()
    args, _ = make_inputs(SD1)
    with torch.no_grad():
        baseline = unet(*args).sample
        recorder = RecordingProcessor()
        unet.set_attn_processor(recorder)
        out = unet(*args, cross_attention_kwargs={"tag": "x"}).sample
    assert len(recorder.seen) == len(unet.attn_processors) and set(recorder.seen) == {"x"}
    assert torch.equal(out, baseline)
    per_layer = {name: AttnProcessor() for name in unet.attn_processors}
    unet.set_attn_processor(per_layer)
    assert all(p is per_layer[name] for name, p in unet.attn_processors.items())
    with pytest.raises(ConfigError, match="missing"):
        unet.set_attn_processor(dict(list(per_layer.items())[1:]))


def test_default_processor_calls_sdpa_with_split_heads():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD1).eval()
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.scaled_dot_product_attention:
                seen.append(tuple(args[0].shape))
            return func(*args, **(kwargs or {}))

    args, _ = make_inputs(SD1, batch=1)
    with torch.no_grad(), Spy():
        unet(args[0], 10, args[2])
    heads = SD1["attention_head_dim"]
    assert len(seen) == len(unet.attn_processors)
    assert all(len(shape) == 4 and shape[1] == heads for shape in seen)
    assert (1, heads, 16 * 16, 32 // heads) in seen


def test_missing_added_conditions_are_named():
    unet = UNet2DConditionModel(**SDXL)
    args, _ = make_inputs(SDXL)
    with pytest.raises(MissingInputError, match="time_ids"):
        unet(*args, added_cond_kwargs={"text_embeds": torch.zeros(2, 32)})


@pytest.mark.parametrize(
    "override, key",
    [({"dual_cross_attention": True}, "dual_cross_attention"), ({"down_block_types": ("Foo", "DownBlock2D")}, "down_block_types"),
     ({"act_fn": "tanhh"}, "act_fn"), ({"block_out_channels": (32, 64, 64)}, "block_out_channels")],
)
def test_unsupported_configs_raise_config_error(override, key):
    with pytest.raises(ConfigError, match=key):
        UNet2DConditionModel(**dict(SD1, **override))


VARIANTS = {
    "projection_class_text_proj_scale_shift": dict(
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D",) * 2, up_block_types=("CrossAttnUpBlock2D",) * 2,
        cross_attention_dim=32, layers_per_block=2, sample_size=16, class_embed_type="projection",
        projection_class_embeddings_input_dim=8, encoder_hid_dim=24, time_embedding_act_fn="silu", timestep_post_act="silu",
        resnet_time_scale_shift="scale_shift", only_cross_attention=(True, False), mid_block_type="UNetMidBlock2D",
        conv_in_kernel=1, conv_out_kernel=1, transformer_layers_per_block=((1, 2), (2, 1)),
        reverse_transformer_layers_per_block=((1, 2, 1), (2, 1, 1)), class_embeddings_concat=True,
        attention_head_dim=(2, 4), mid_block_scale_factor=1.414, norm_eps=1e-6,
    ),
    "fourier_class_ids_per_block_lists": dict(
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=(32, 48), attention_head_dim=2,
        layers_per_block=(1, 2), sample_size=16, time_embedding_type="fourier", num_class_embeds=10,
        center_input_sample=True, mid_block_type=None, freq_shift=1, flip_sin_to_cos=False,
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_less_common_config_keys_match_diffusers(name, tmp_path):
    config = VARIANTS[name]
    torch.manual_seed(0)
    reference = perturb(diffusers.UNet2DConditionModel(**config))
    reference.save_pretrained(tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    assert set(ours.state_dict()) == set(reference.state_dict())
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 16, 16, generator=gen)
    states = torch.randn(2, 7, config.get("encoder_hid_dim", 32), generator=gen)
    labels = torch.randn(2, 8, generator=gen) if config.get("class_embed_type") else torch.tensor([1, 7])
    with torch.no_grad():
        expected = reference(sample, torch.tensor([2.0, 0.5]), states, class_labels=labels).sample
        got = ours(sample, torch.tensor([2.0, 0.5]), states, class_labels=labels).sample
    assert max_diff(got, expected) <= ATOL


class WeightedProcessor(torch.nn.Module):
    """A processor with weights of its own (as an IP-Adapter's): it becomes a submodule of the attention."""

    def __init__(self, width: int):
        super().__init__()
        self.gate = torch.nn.Parameter(torch.zeros(width))

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
        return AttnProcessor()(attn, hidden_states, encoder_hidden_states, attention_mask) + self.gate


def test_module_processors_are_submodules_and_unknown_kwargs_warn():
    layer = Attention(8, heads=2, dim_head=4)
    tokens = torch.randn(1, 3, 8)
    baseline = layer(tokens)
    layer.set_processor(WeightedProcessor(8))
    assert "processor.gate" in layer.state_dict()
    assert torch.allclose(layer(tokens), baseline)
    with pytest.warns(UserWarning, match=r"\['ip_scale'\] are not taken by WeightedProcessor"):
        layer(tokens, ip_scale=0.5)
    layer.set_processor(AttnProcessor())
    assert "processor.gate" not in layer.state_dict() and isinstance(layer.processor, AttnProcessor)


@pytest.mark.gpu
def test_float16_on_cuda_matches_diffusers(tmp_path):
    """Same weights and inputs in float16 on CUDA (SDPA picks a fused kernel): tolerance 2e-3."""
    torch.manual_seed(0)
    reference = perturb(diffusers.UNet2DConditionModel(**SDXL))
    reference.save_pretrained(tmp_path)
    ours = UNet2DConditionModel.from_pretrained(tmp_path, torch_dtype=torch.float16).to("cuda")
    reference = reference.to("cuda", torch.float16)
    (sample, timestep, states), kwargs = make_inputs(SDXL)
    kwargs["added_cond_kwargs"] = {k: v.to("cuda", torch.float16) for k, v in kwargs["added_cond_kwargs"].items()}
    args = (sample.to("cuda", torch.float16), timestep.to("cuda"), states.to("cuda", torch.float16))
    with torch.no_grad():
        assert max_diff(ours(*args, **kwargs).sample.float(), reference(*args, **kwargs).sample.float()) <= 2e-3
