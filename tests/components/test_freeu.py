"""FreeU on the UNet against diffusers' ``enable_freeu`` (test-only reference) on tiny random UNets, bitwise
(tolerance 0: the same operations in the same order), and ComfyUI's FreeU_V2 against its formula written out here
(tolerance 1e-6)."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.errors import ModelInputError  # noqa: E402
from diffblocks.components.models import UNet2DConditionModel  # noqa: E402
from diffblocks.components.models.freeu import FreeU, fourier_filter  # noqa: E402

# three up blocks, so that FreeU's two stages and one stage it leaves alone are all there
SD = dict(block_out_channels=(32, 64, 64),
          down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
          attention_head_dim=2, layers_per_block=1, norm_num_groups=8, sample_size=16)
SDXL = dict(SD, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8)
PAPER_SD = dict(s1=0.9, s2=0.2, b1=1.5, b2=1.6)


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def pair(request, tmp_path_factory):
    """(config, diffusers' UNet, ours loaded from its save), weights moved off their initial values."""
    config = {"sd": SD, "sdxl": SDXL}[request.param]
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**config).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn(param.shape) * 0.05)
    path = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(path)
    return config, reference, UNet2DConditionModel.from_pretrained(path).eval()


def inputs(config, height=16, width=16):
    gen = torch.Generator().manual_seed(1)
    args = (torch.randn(2, 4, height, width, generator=gen), torch.tensor([10.0, 700.0]),
            torch.randn(2, 5, config["cross_attention_dim"], generator=gen))
    kwargs = {}
    if config.get("addition_embed_type"):
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 32, generator=gen),
                                       "time_ids": torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]] * 2)}
    return args, kwargs


@torch.no_grad()
@pytest.mark.parametrize("size", [(16, 16), (24, 16)], ids=["square", "not-a-power-of-two"])
def test_freeu_equals_diffusers_and_is_undone(pair, size):
    config, reference, ours = pair
    args, kwargs = inputs(config, *size)
    plain = ours(*args, **kwargs).sample
    reference.enable_freeu(**PAPER_SD)
    ours.enable_freeu(**PAPER_SD)
    try:
        expected, got = reference(*args, **kwargs).sample, ours(*args, **kwargs).sample
    finally:
        reference.disable_freeu()
        ours.disable_freeu()
    assert torch.equal(got, expected)
    assert (got - plain).abs().max() > 1e-3  # FreeU changed the prediction
    assert ours.freeu is None and torch.equal(ours(*args, **kwargs).sample, plain)


@torch.no_grad()
def test_freeu_leaves_the_weights_and_the_third_stage_alone(pair):
    _, _, ours = pair
    weights = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.enable_freeu(**PAPER_SD)
    assert ours.freeu == FreeU(b1=1.5, b2=1.6, s1=0.9, s2=0.2)
    hidden, skip = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    assert ours.up_blocks[2].freeu.apply(2, hidden, skip) == (hidden, skip)
    ours.disable_freeu()
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in weights.items())


def comfy_v2(hidden, skip, b, s):
    """ComfyUI's FreeU_V2 patch for one resnet, written out: the backbone factor weighed by the channel mean
    scaled to [0, 1] per image; the skip connection's low frequencies scaled (FreeU's Fourier filter)."""
    mean = hidden.mean(1).unsqueeze(1)
    batch = mean.shape[0]
    high = mean.view(batch, -1).max(dim=-1, keepdim=True).values
    low = mean.view(batch, -1).min(dim=-1, keepdim=True).values
    mean = (mean - low.unsqueeze(2).unsqueeze(3)) / (high - low).unsqueeze(2).unsqueeze(3)
    hidden = hidden.clone()
    hidden[:, : hidden.shape[1] // 2] = hidden[:, : hidden.shape[1] // 2] * ((b - 1) * mean + 1)
    spectrum = torch.fft.fftshift(torch.fft.fftn(skip, dim=(-2, -1)), dim=(-2, -1))
    rows, cols = skip.shape[-2:]
    spectrum[..., rows // 2 - 1 : rows // 2 + 1, cols // 2 - 1 : cols // 2 + 1] *= s
    return hidden, torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=(-2, -1)), dim=(-2, -1)).real


def test_version_2_is_comfyuis_freeu_v2_and_leaves_its_inputs_alone():
    gen = torch.Generator().manual_seed(3)
    hidden, skip = torch.randn(2, 8, 6, 8, generator=gen), torch.randn(2, 8, 6, 8, generator=gen)
    kept = hidden.clone(), skip.clone()
    settings = FreeU(b1=1.3, b2=1.4, s1=0.9, s2=0.2, version=2)
    for stage, (b, s) in enumerate([(1.3, 0.9), (1.4, 0.2)]):
        got, expected = settings.apply(stage, hidden, skip), comfy_v2(hidden, skip, b, s)
        assert all(torch.allclose(g, e, atol=1e-6, rtol=0) for g, e in zip(got, expected)), stage
    assert torch.equal(hidden, kept[0]) and torch.equal(skip, kept[1])
    v1 = FreeU(b1=1.3, b2=1.4, s1=0.9, s2=0.2).apply(0, hidden, skip)
    assert not torch.equal(v1[0], settings.apply(0, hidden, skip)[0]) and torch.equal(v1[1], settings.apply(0, hidden,
                                                                                                             skip)[1])


def test_the_filter_runs_in_float32_where_half_precision_ffts_cannot_and_keeps_the_dtype():
    x = torch.randn(1, 4, 6, 8)
    for dtype in (torch.bfloat16, torch.float16):
        got = fourier_filter(x.to(dtype), 1, 0.5)
        assert got.dtype == dtype
        assert torch.equal(got, fourier_filter(x.to(dtype).float(), 1, 0.5).to(dtype))
    assert torch.allclose(fourier_filter(x, 1, 1.0), x, atol=1e-6)  # a scale of 1 leaves it as it was


@pytest.mark.parametrize("bad, named", [(dict(b1=float("nan")), "b1 must be a finite number, got nan"),
                                        (dict(s2="0.2"), "s2 must be a finite number, got '0.2'"),
                                        (dict(version=3), "version must be 1 or 2, got 3")])
def test_bad_factors_are_one_error_naming_them(pair, bad, named):
    _, _, ours = pair
    with pytest.raises(ModelInputError, match=named.replace("(", r"\(")):
        ours.enable_freeu(**{**PAPER_SD, **bad})
    assert ours.freeu is None  # nothing was set
