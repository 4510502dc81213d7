"""ModelMixin.from_pretrained / save_pretrained: layouts (sharded, variants), dtypes, and bad input."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffblocks.components.config import register_to_config
from diffblocks.components.models import AutoencoderKL, ModelMixin, UNet2DConditionModel
from diffblocks.modular_pipelines.errors import ConfigError, CorruptedFileError, MissingFileError, WeightsMismatchError

TINY_UNET = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2,
    layers_per_block=1, sample_size=16,
)
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(**TINY_UNET).eval()


@pytest.fixture
def saved(unet, tmp_path):
    unet.save_pretrained(tmp_path)
    return tmp_path


def run(model):
    gen = torch.Generator().manual_seed(1)
    sample, states = torch.randn(1, 4, 16, 16, generator=gen), torch.randn(1, 5, 32, generator=gen)
    with torch.no_grad():
        return model(sample.to(model.dtype), 10, states.to(model.dtype)).sample


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- layouts -----------------------------------------------------------------------------------


def test_round_trip_single_file(unet, saved):
    assert (saved / "config.json").is_file() and (saved / WEIGHTS).is_file()
    assert json.loads((saved / "config.json").read_text())["_class_name"] == "UNet2DConditionModel"
    loaded = UNet2DConditionModel.from_pretrained(saved)
    assert_same_weights(loaded, unet)
    assert not loaded.training and loaded.device.type == "cpu"
    # Loaded weights are views of the file (8-byte aligned), so CPU kernels may sum in another order: 1e-5.
    assert (run(loaded) - run(unet)).abs().max().item() <= 1e-5


def test_sharded_round_trip_and_stale_files_removed(unet, saved):
    unet.save_pretrained(saved, max_shard_size="200KB")
    index = json.loads((saved / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((saved / s).is_file() for s in shards)
    assert not (saved / WEIGHTS).exists()  # the earlier single file would shadow the shards
    assert_same_weights(UNet2DConditionModel.from_pretrained(saved), unet)
    unet.save_pretrained(saved)
    assert (saved / WEIGHTS).is_file() and not any((saved / s).exists() for s in shards)


def test_sharded_save_is_read_by_diffusers(unet, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    unet.save_pretrained(tmp_path, max_shard_size="200KB")
    reloaded = diffusers.UNet2DConditionModel.from_pretrained(tmp_path)
    assert set(reloaded.state_dict()) == set(unet.state_dict())
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in unet.state_dict().items())


def test_save_over_the_folder_it_was_loaded_from(unet, saved):
    """Loaded weights are views of the files: saving over them (single file <-> shards) must not break them."""
    loaded = UNet2DConditionModel.from_pretrained(saved)
    loaded.save_pretrained(saved, max_shard_size="200KB")
    loaded.save_pretrained(saved)
    assert_same_weights(loaded, unet)
    assert_same_weights(UNet2DConditionModel.from_pretrained(saved), unet)


def test_variant_and_subfolder(unet, tmp_path):
    unet.save_pretrained(tmp_path / "unet", variant="fp16")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet", variant="fp16")
    assert_same_weights(loaded, unet)
    with pytest.raises(MissingFileError, match="diffusion_pytorch_model.safetensors"):
        UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet")


def test_variant_sharded(unet, tmp_path):
    unet.save_pretrained(tmp_path, variant="fp16", max_shard_size="200KB")
    assert (tmp_path / "diffusion_pytorch_model.safetensors.index.fp16.json").is_file()
    assert list(tmp_path.glob("diffusion_pytorch_model.fp16-00001-of-*.safetensors"))
    assert_same_weights(UNet2DConditionModel.from_pretrained(tmp_path, variant="fp16"), unet)


def test_torch_dtype_converts_and_default_dtype_upcasts(unet, saved):
    half = UNet2DConditionModel.from_pretrained(saved, torch_dtype=torch.float16)
    assert half.dtype == torch.float16 and all(p.dtype == torch.float16 for p in half.parameters())
    half.save_pretrained(saved)
    assert load_file(saved / WEIGHTS)["conv_in.weight"].dtype == torch.float16
    # Without torch_dtype the model is built in the default dtype, as diffusers does.
    full = UNet2DConditionModel.from_pretrained(saved)
    assert full.dtype == torch.float32
    assert torch.equal(full.conv_in.weight, unet.conv_in.weight.half().float())


def _mapped_file(address: int) -> str | None:
    """The file mapped at ``address`` in this process (Linux), or None."""
    for line in open("/proc/self/maps"):
        parts = line.split()
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if start <= address < end:
            return parts[5] if len(parts) > 5 else None
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_no_copy_when_dtype_matches(saved):
    """Parameters are the memory-mapped file's pages, not a copy of them."""
    loaded = UNet2DConditionModel.from_pretrained(saved)
    weights = str((saved / WEIGHTS).resolve())
    assert all(_mapped_file(p.data_ptr()) == weights for p in loaded.parameters())
    converted = UNet2DConditionModel.from_pretrained(saved, torch_dtype=torch.float16)
    assert _mapped_file(converted.conv_in.weight.data_ptr()) != weights


def test_legacy_pickle_weights_load_when_no_safetensors(unet, saved):
    state = load_file(saved / WEIGHTS)
    (saved / WEIGHTS).unlink()
    torch.save(state, saved / "diffusion_pytorch_model.bin")
    assert_same_weights(UNet2DConditionModel.from_pretrained(saved), unet)


class WithBuffer(ModelMixin):
    """A toy model with a non-persistent buffer computed at init (not in the weights file)."""

    @register_to_config
    def __init__(self, width: int = 4):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.register_buffer("freqs", torch.arange(width, dtype=torch.float32) * 0.5, persistent=False)


def test_buffers_outside_the_state_dict_are_computed(tmp_path):
    WithBuffer(width=6).save_pretrained(tmp_path)
    loaded = WithBuffer.from_pretrained(tmp_path)
    assert not loaded.freqs.is_meta and torch.equal(loaded.freqs, torch.arange(6, dtype=torch.float32) * 0.5)
    assert loaded.config.width == 6


# --- bad input ---------------------------------------------------------------------------------


def test_missing_config_names_the_path(tmp_path):
    with pytest.raises(MissingFileError, match=str(tmp_path / "unet" / "config.json")):
        UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet")


def test_missing_weights_names_every_path(saved):
    (saved / WEIGHTS).unlink()
    with pytest.raises(MissingFileError) as info:
        UNet2DConditionModel.from_pretrained(saved)
    message = str(info.value)
    assert f"{saved}/{WEIGHTS}" in message and "diffusion_pytorch_model.safetensors.index.json" in message


def test_missing_shard_names_it(unet, tmp_path):
    unet.save_pretrained(tmp_path, max_shard_size="200KB")
    shard = sorted(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(MissingFileError, match=shard.name):
        UNet2DConditionModel.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_listed(saved):
    state = load_file(saved / WEIGHTS)
    dropped = sorted(k for k in state if k.startswith("down_blocks.0."))
    for key in dropped:
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, saved / WEIGHTS)
    with pytest.raises(WeightsMismatchError) as info:
        UNet2DConditionModel.from_pretrained(saved)
    message = str(info.value)
    assert "missing keys" in message and dropped[0] in message and f"({len(dropped)} in all)" in message
    assert "unexpected keys: extra.weight" in message


def test_shape_mismatch_names_the_key(saved):
    state = load_file(saved / WEIGHTS)
    state["conv_in.weight"] = torch.zeros(32, 4, 1, 1)
    save_file(state, saved / WEIGHTS)
    with pytest.raises(WeightsMismatchError, match=r"'conv_in.weight' expects shape \(32, 4, 3, 3\).*\(32, 4, 1, 1\)"):
        UNet2DConditionModel.from_pretrained(saved)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_weights_name_the_file(saved, damage):
    path = saved / WEIGHTS
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\x01not safetensors" * 10, "empty": b""}[damage])
    with pytest.raises(CorruptedFileError, match=str(path)):
        UNet2DConditionModel.from_pretrained(saved)


def test_corrupted_index_names_the_file(unet, tmp_path):
    unet.save_pretrained(tmp_path, max_shard_size="200KB")
    index = tmp_path / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text("{not json")
    with pytest.raises(CorruptedFileError, match=str(index)):
        UNet2DConditionModel.from_pretrained(tmp_path)


def test_config_of_another_class_is_refused(saved):
    with pytest.raises(ConfigError, match="describes a UNet2DConditionModel, not a AutoencoderKL"):
        AutoencoderKL.from_pretrained(saved)


def test_hub_repo_offline_without_cache_is_a_missing_file(monkeypatch, tmp_path):
    """A repo id goes through huggingface_hub (offline here, with an empty cache): nothing is downloaded."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingFileError, match="someone/not-a-cached-repo/unet/config.json"):
        UNet2DConditionModel.from_pretrained("someone/not-a-cached-repo", subfolder="unet")
