"""UNet2DModel (unconditional, DDPM-style) against diffusers (test-only reference) on tiny random models.

Tolerance: max abs difference <= 1e-5 in float32 (in practice bitwise equal).
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.models import SpatialSelfAttention, UNet2DModel  # noqa: E402

ATOL = 1e-5
BASE = dict(
    block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"), sample_size=16, layers_per_block=1, norm_num_groups=8,
)
CONFIGS = {
    "positional": dict(BASE, attention_head_dim=16, downsample_padding=0, freq_shift=1, flip_sin_to_cos=False, norm_eps=1e-6),
    "fourier": dict(BASE, time_embedding_type="fourier", attention_head_dim=None),
    "resnet_resampling": dict(BASE, attention_head_dim=8, downsample_type="resnet", upsample_type="resnet",
                              resnet_time_scale_shift="scale_shift", down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
                              up_block_types=("AttnUpBlock2D", "AttnUpBlock2D")),
}


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    reference = perturb(diffusers.UNet2DModel(**CONFIGS[request.param]))
    path = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(path)
    return request.param, reference, UNet2DModel.from_pretrained(path)


def inputs(name):
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    timesteps = [torch.tensor([0.5, 3.0]), torch.tensor(0.8)] if name == "fourier" else [10, torch.tensor([1, 999])]
    return sample, timesteps


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_same_state_dict_keys(pair):
    _, reference, ours = pair
    assert set(ours.state_dict()) == set(reference.state_dict())
    attention_layers = [name for name, module in reference.named_modules() if type(module).__name__ == "Attention"]
    assert list(ours.attn_processors) == [f"{name}.processor" for name in attention_layers]


def test_forward_matches_diffusers(pair):
    name, reference, ours = pair
    sample, timesteps = inputs(name)
    with torch.no_grad():
        for timestep in timesteps:
            assert max_diff(ours(sample, timestep).sample, reference(sample, timestep).sample) <= ATOL


def test_diffusers_loads_what_we_save(pair, tmp_path):
    name, reference, ours = pair
    ours.save_pretrained(tmp_path)
    reloaded = diffusers.UNet2DModel.from_pretrained(tmp_path).eval()
    sample, timesteps = inputs(name)
    with torch.no_grad():
        assert max_diff(reloaded(sample, timesteps[0]).sample, reference(sample, timesteps[0]).sample) <= ATOL


def test_attention_is_spatial_self_attention(pair):
    _, _, ours = pair
    layer = ours.mid_block.attentions[0]
    assert isinstance(layer, SpatialSelfAttention)
    # The mid attention has no group norm of its own with scale-shift resnets (diffusers' rule).
    assert (layer.group_norm is None) == (ours.config.resnet_time_scale_shift == "scale_shift")
    assert {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"} <= set(layer.state_dict())


def test_loads_legacy_attention_weight_names(pair, tmp_path):
    """Checkpoints from before the attention rename store query/key/value/proj_attn; they still load."""
    name, reference, _ = pair
    reference.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    state = load_file(weights)
    legacy = {}
    for key, tensor in state.items():
        if "attentions" in key:
            for new, old in renames.items():
                key = key.replace(new, old)
        legacy[key] = tensor.clone()
    assert any(".query." in key for key in legacy)
    save_file(legacy, weights)
    ours = UNet2DModel.from_pretrained(tmp_path)
    sample, timesteps = inputs(name)
    with torch.no_grad():
        assert max_diff(ours(sample, timesteps[0]).sample, reference(sample, timesteps[0]).sample) <= ATOL
