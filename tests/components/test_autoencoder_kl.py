"""AutoencoderKL against diffusers (test-only reference) on a tiny random VAE.

Tolerance: max abs difference <= 1e-5 in float32 for posterior mean/std, seeded posterior samples, decodes
and tiled encode/decode (in practice bitwise equal).
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.models import AutoencoderKL, DiagonalGaussianDistribution  # noqa: E402
from diffblocks.components.noise import randn_tensor  # noqa: E402

ATOL = 1e-5
CONFIG = dict(
    block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4, norm_num_groups=32, sample_size=32, layers_per_block=1, scaling_factor=0.13025,
)


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    reference = perturb(diffusers.AutoencoderKL(**CONFIG))
    path = tmp_path_factory.mktemp("vae")
    reference.save_pretrained(path)
    return reference, AutoencoderKL.from_pretrained(path)


def images(batch=2, size=32, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_same_state_dict_keys_and_config(pair):
    reference, ours = pair
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert ours.config.scaling_factor == 0.13025 and ours.config.latent_channels == 4
    assert ours.config.shift_factor is None and ours.config.force_upcast is True
    assert list(ours.config.block_out_channels) == [32, 64]
    assert list(ours.attn_processors) == list(reference.attn_processors)


def test_encode_matches_diffusers(pair):
    reference, ours = pair
    x = images()
    with torch.no_grad():
        expected, got = reference.encode(x).latent_dist, ours.encode(x).latent_dist
        assert isinstance(got, DiagonalGaussianDistribution)
        assert max_diff(got.mean, expected.mean) <= ATOL
        assert max_diff(got.std, expected.std) <= ATOL
        assert max_diff(got.mode(), expected.mode()) <= ATOL
        a = expected.sample(generator=torch.Generator().manual_seed(7))
        b = got.sample(generator=torch.Generator().manual_seed(7))
        assert max_diff(a, b) <= ATOL
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        a = expected.sample(generator=gens)
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        assert max_diff(got.sample(generator=gens), a) <= ATOL


def test_decode_and_forward_match_diffusers(pair):
    reference, ours = pair
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    x = images()
    with torch.no_grad():
        assert max_diff(ours.decode(z).sample, reference.decode(z).sample) <= ATOL
        assert max_diff(ours.decode(z, return_dict=False)[0], reference.decode(z).sample) <= ATOL
        gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        expected = reference(x, sample_posterior=True, generator=gen_a).sample
        assert max_diff(ours(x, sample_posterior=True, generator=gen_b).sample, expected) <= ATOL


def test_slicing_gives_the_same_results(pair):
    _, ours = pair
    x, z = images(batch=3), torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        mean, decoded = ours.encode(x).latent_dist.mean, ours.decode(z).sample
        ours.enable_slicing()
        try:
            assert max_diff(ours.encode(x).latent_dist.mean, mean) <= ATOL
            assert max_diff(ours.decode(z).sample, decoded) <= ATOL
        finally:
            ours.disable_slicing()


def test_tiling_matches_diffusers(pair):
    reference, ours = pair
    x, z = images(batch=1, size=64), torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    reference.enable_tiling()
    ours.enable_tiling()
    try:
        with torch.no_grad():
            assert max_diff(ours.encode(x).latent_dist.mean, reference.encode(x).latent_dist.mean) <= ATOL
            assert max_diff(ours.decode(z).sample, reference.decode(z).sample) <= ATOL
    finally:
        reference.disable_tiling()
        ours.disable_tiling()


def test_diffusers_loads_what_we_save(pair, tmp_path):
    reference, ours = pair
    ours.save_pretrained(tmp_path)
    reloaded = diffusers.AutoencoderKL.from_pretrained(tmp_path).eval()
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert max_diff(reloaded.decode(z).sample, reference.decode(z).sample) <= ATOL
    assert reloaded.config.scaling_factor == 0.13025


def test_randn_tensor_draws_like_diffusers():
    from diffusers.utils.torch_utils import randn_tensor as reference_randn

    for gen_factory in (lambda: torch.Generator().manual_seed(9), lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]):
        expected = reference_randn((2, 4, 3, 3), generator=gen_factory(), device=torch.device("cpu"), dtype=torch.float32)
        assert torch.equal(randn_tensor((2, 4, 3, 3), generator=gen_factory(), device="cpu", dtype=torch.float32), expected)
