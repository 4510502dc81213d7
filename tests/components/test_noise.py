"""randn_tensor draws the same numbers, from the same generators in the same order, as diffusers' one.

Tolerance: exact equality (``torch.equal``), including the generators' states afterwards.
"""

from __future__ import annotations

import pytest
import torch

torch_utils = pytest.importorskip("diffusers.utils.torch_utils")

from diffblocks.components.noise import randn_tensor  # noqa: E402

reference = torch_utils.randn_tensor


def generators(*seeds, device="cpu"):
    return [torch.Generator(device).manual_seed(s) for s in seeds]


@pytest.mark.parametrize("dtype", [None, torch.float32, torch.float16, torch.bfloat16])
def test_single_generator_matches(dtype):
    (ours_gen,), (ref_gen,) = generators(0), generators(0)
    ours = randn_tensor((2, 4, 8, 8), generator=ours_gen, dtype=dtype)
    assert torch.equal(ours, reference((2, 4, 8, 8), generator=ref_gen, dtype=dtype))
    assert ours.dtype == (dtype or torch.get_default_dtype()) and ours.device.type == "cpu"
    assert torch.equal(ours_gen.get_state(), ref_gen.get_state())


def test_generator_list_draws_per_sample_in_order():
    ours_gens, ref_gens = generators(1, 2, 3), generators(1, 2, 3)
    ours = randn_tensor([3, 4, 5, 5], generator=ours_gens)
    assert torch.equal(ours, reference((3, 4, 5, 5), generator=ref_gens))
    # sample i is exactly what generator i alone gives
    assert torch.equal(ours[1:2], torch.randn((1, 4, 5, 5), generator=generators(2)[0]))
    for a, b in zip(ours_gens, ref_gens):
        assert torch.equal(a.get_state(), b.get_state())


def test_list_of_one_is_a_single_generator():
    ours = randn_tensor((2, 3), generator=generators(5))
    assert torch.equal(ours, torch.randn((2, 3), generator=generators(5)[0]))


def test_cpu_generator_for_another_device_draws_on_cpu_and_moves():
    (gen,) = generators(0)
    moved = randn_tensor((2, 3), generator=gen, device="meta")
    assert moved.device.type == "meta" and moved.shape == (2, 3)
    expected = torch.Generator().manual_seed(0)
    torch.randn((2, 3), generator=expected)  # the draw happened on the CPU generator
    assert torch.equal(gen.get_state(), expected.get_state())


def test_global_rng_without_generator():
    torch.manual_seed(0)
    ours = randn_tensor((4,), layout=torch.strided)
    torch.manual_seed(0)
    assert torch.equal(ours, reference((4,)))


@pytest.mark.gpu
def test_cpu_generator_with_cuda_target_matches():
    (ours_gen,), (ref_gen,) = generators(0), generators(0)
    ours = randn_tensor((2, 4, 8, 8), generator=ours_gen, device="cuda", dtype=torch.float16)
    theirs = reference((2, 4, 8, 8), generator=ref_gen, device=torch.device("cuda"), dtype=torch.float16)
    assert ours.device.type == "cuda" and torch.equal(ours, theirs)
    cuda_gens = generators(0, 1, device="cuda")
    assert torch.equal(
        randn_tensor((2, 3), generator=cuda_gens, device="cuda"),
        reference((2, 3), generator=generators(0, 1, device="cuda"), device=torch.device("cuda")),
    )
    with pytest.raises(ValueError, match="generator on cuda"):
        randn_tensor((2,), generator=generators(0, device="cuda")[0], device="cpu")
