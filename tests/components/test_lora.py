"""LoRA pieces on their own: key layouts, SGM names, PEFT injection on a plain torch module, errors.

The pipelines' numbers against diffusers are in tests/presets/test_lora_parity.py.
"""

import pytest
import torch
from peft.tuners.lora import LoraLayer
from torch import nn
from tiny_lora import to_sgm

from diffblocks.components import lora
from diffblocks.components.errors import CorruptedFileError, LoraError
from diffblocks.components.lora.formats import parse_lora
from diffblocks.components.lora.mapping import adaptable_modules, sgm_to_diffusers
from diffblocks.components.lora.scales import weights_per_component
from diffblocks.components.models import UNet2DConditionModel
from diffblocks.components.spec import revision_of


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(6, 5)
        self.conv = nn.Conv2d(5, 4, 3, padding=1)

    def forward(self, x):  # x: (n, 6, h, w)
        return self.conv(self.proj(x.movedim(1, -1)).movedim(-1, 1))


def toy_lora(layout="peft", seed=0, rank=2, alpha=None):
    g = torch.Generator().manual_seed(seed)
    weights = {"proj": (torch.randn(rank, 6, generator=g), torch.randn(5, rank, generator=g)),
               "conv": (torch.randn(rank, 5, 3, 3, generator=g), torch.randn(4, rank, 1, 1, generator=g))}
    out = {}
    for name, (down, up) in weights.items():
        if layout == "peft":
            out |= {f"unet.{name}.lora_A.weight": down, f"unet.{name}.lora_B.weight": up}
        else:
            out |= {f"lora_unet_{name}.lora_down.weight": down, f"lora_unet_{name}.lora_up.weight": up}
            if alpha is not None:
                out[f"lora_unet_{name}.alpha"] = torch.tensor(alpha)
    return out


def by_hand(model, state, x, scale=1.0, alpha_over_rank=1.0):
    """The LoRA computation written out: W + scale * alpha/r * up @ down, for both layers."""
    proj_w = model.proj.weight + scale * alpha_over_rank * state["unet.proj.lora_B.weight"] @ state["unet.proj.lora_A.weight"]
    h = nn.functional.linear(x.movedim(1, -1), proj_w, model.proj.bias).movedim(-1, 1)
    up, down = state["unet.conv.lora_B.weight"], state["unet.conv.lora_A.weight"]
    conv_w = model.conv.weight + scale * alpha_over_rank * torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
    return nn.functional.conv2d(h, conv_w, model.conv.bias, padding=1)


def load(model, state, name="a"):
    return lora.load_lora({"unet": model}, state, adapter_name=name)


X = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(1))


def test_linear_and_conv_layers_compute_the_lora_and_scale():
    model, state = Toy(), toy_lora()
    load(model, state)
    with torch.no_grad():
        assert torch.allclose(model(X), by_hand(model, state, X), atol=1e-5)
        lora.set_weights(model, {"a": 0.3})
        assert torch.allclose(model(X), by_hand(model, state, X, scale=0.3), atol=1e-5)


def test_kohya_alpha_scales_by_alpha_over_rank_and_matches_peft_layout():
    kohya, peft = Toy(), Toy()
    load(kohya, toy_lora("kohya", alpha=1.0))  # rank 2: scale 0.5
    load(peft, toy_lora("peft"))
    lora.set_weights(peft, {"a": 0.5})
    with torch.no_grad():
        assert torch.equal(kohya(X), peft(X))


def test_fuse_unfuse_unload_give_back_the_original_tensors_and_modules():
    model = Toy()
    proj, weight, conv_weight = model.proj, model.proj.weight, model.conv.weight
    before = weight.detach().clone()
    with torch.no_grad():
        plain = model(X)
        load(model, toy_lora())
        unfused = model(X)
        active = lora.active_adapters(model)
        lora.fuse(model)
        assert model.proj.weight is not weight and torch.equal(weight, before)  # fused into a copy
        # the PEFT wrappers step out of the tree: a fused step calls the plain modules, as without LoRA
        assert model.proj is proj and not any(isinstance(m, LoraLayer) for m in model.modules())
        assert lora.is_fused(model) and lora.active_adapters(model) == active
        assert torch.allclose(model(X), unfused, atol=1e-5)
        lora.unfuse(model)
        assert isinstance(model.proj, LoraLayer) and model.proj.base_layer is proj
        assert model.proj.base_layer.weight is weight and torch.equal(model(X), unfused)
        assert not lora.is_fused(model) and lora.active_adapters(model) == active
        lora.fuse(model)
        lora.unload(model)
        assert model.proj is proj and model.proj.weight is weight and model.conv.weight is conv_weight
        assert torch.equal(model(X), plain) and lora.loaded_adapters(model) == []


def test_fusing_a_weight_sharing_copy_leaves_the_shared_weights_alone():
    import copy

    model = Toy()
    shared = {id(t): t for t in model.parameters()}
    twin = copy.deepcopy(model, shared)
    before = model.proj.weight.detach().clone()
    load(twin, toy_lora())
    lora.fuse(twin)
    assert torch.equal(model.proj.weight, before) and isinstance(model.proj, nn.Linear)


def test_every_change_counts_in_the_revision():
    model = Toy()
    seen = [revision_of(model)]
    for step in (lambda: load(model, toy_lora()), lambda: lora.set_weights(model, {"a": 0.5}), lambda: lora.fuse(model),
                 lambda: lora.unfuse(model), lambda: lora.enable(model, False), lambda: lora.unload(model)):
        step()
        seen.append(revision_of(model))
    assert seen == sorted(set(seen))


def test_two_adapters_delete_one():
    model = Toy()
    load(model, toy_lora(seed=0), "a")
    load(model, toy_lora(seed=1), "b")
    assert lora.active_adapters(model) == ["b"] and lora.loaded_adapters(model) == ["a", "b"]
    lora.set_weights(model, {"a": 1.0, "b": 1.0})
    lora.delete_adapters(model, ["b"])
    only_a = Toy()
    load(only_a, toy_lora(seed=0))
    with torch.no_grad():
        assert torch.equal(model(X), only_a(X))


@pytest.mark.parametrize("key, module", [
    ("unet.down.attn1.processor.to_q_lora.down.weight", "down.attn1.to_q"),
    ("unet.down.attn1.processor.to_out_lora.up.weight", "down.attn1.to_out.0"),
    ("text_encoder.text_model.encoder.layers.0.self_attn.to_k_lora.down.weight", "text_model.encoder.layers.0.self_attn.k_proj"),
    ("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight", "text_model.encoder.layers.0.mlp.fc1"),
    ("down_blocks.0.resnets.0.conv1.lora.down.weight", "down_blocks.0.resnets.0.conv1"),
    ("base_model.model.mid.to_v.lora_A.weight", "mid.to_v"),
    ("unet.mid.to_v.lora_B.default.weight", "mid.to_v"),
])
def test_diffusers_layouts_name_the_adapted_module(key, module):
    parsed = parse_lora({key: torch.zeros(1)})
    component = key.split(".")[0] if key.startswith(("text_encoder", "unet.")) else "denoiser"  # the UNet or FLUX's transformer
    assert list(parsed.layers[component]) == [module] and not parsed.unread


def sdxl_like_unet():
    return UNet2DConditionModel(
        block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=2, layers_per_block=2, sample_size=8, norm_num_groups=8, use_linear_projection=True)


def test_sgm_names_of_resnets_and_attentions_map_back():
    unet = sdxl_like_unet()
    names = [n for n in adaptable_modules(unet) if n.startswith(("down_blocks", "up_blocks", "mid_block"))
             and (".resnets." in n or ".attentions." in n)]
    assert len(names) > 100
    for name in names:
        assert sgm_to_diffusers(unet, to_sgm(name, 2).replace(".", "_")) == name.replace(".", "_"), name


@pytest.mark.parametrize("sgm, ours", [
    ("input_blocks_3_0_op", "down_blocks_0_downsamplers_0_conv"),
    ("output_blocks_2_2_conv", "up_blocks_0_upsamplers_0_conv"),
    ("output_blocks_5_2_conv", "up_blocks_1_upsamplers_0_conv"),
    ("input_blocks_0_0", "conv_in"), ("out_2", "conv_out"), ("time_embed_0", "time_embedding_linear_1"),
])
def test_sgm_names_outside_resnets_and_attentions(sgm, ours):
    assert sgm_to_diffusers(sdxl_like_unet(), sgm) == ours


def test_unknown_keys_raise_one_error_and_change_nothing():
    model = Toy()
    state = toy_lora("kohya") | {"lora_unet_proj.dora_scale": torch.zeros(1, 6)}
    with pytest.raises(LoraError, match=r"1 key\(s\) do not fit.*lora_unet_proj\.dora_scale.*DoRA"):
        load(model, state)
    assert isinstance(model.proj, nn.Linear) and lora.loaded_adapters(model) == []


def test_a_lora_for_other_shapes_names_the_keys_and_changes_nothing():
    model = Toy()
    state = toy_lora() | {"unet.conv.lora_A.weight": torch.zeros(2, 7, 3, 3)}  # conv takes 5 channels
    with pytest.raises(LoraError, match=r"1 key\(s\) do not fit .*no module of that name and shape.*unet\.conv\.lora_"):
        load(model, state)
    missing = toy_lora() | {"unet.nothere.lora_A.weight": torch.zeros(2, 6), "unet.nothere.lora_B.weight": torch.zeros(5, 2)}
    with pytest.raises(LoraError, match="unet.nothere.lora_"):
        load(model, missing)
    assert isinstance(model.proj, nn.Linear) and isinstance(model.conv, nn.Conv2d)


def test_weights_for_a_model_that_is_not_there():
    state = toy_lora() | {"text_encoder_2.x.lora_A.weight": torch.zeros(2, 3), "text_encoder_2.x.lora_B.weight": torch.zeros(3, 2)}
    with pytest.raises(LoraError, match="has weights for 'text_encoder_2'.*another model family"):
        load(Toy(), state)


def test_a_taken_name_is_refused_and_default_names_count_up():
    model = Toy()
    load(model, toy_lora(), "style")
    with pytest.raises(LoraError, match="'style' is already loaded"):
        load(model, toy_lora(), "style")
    assert lora.load_lora({"unet": model}, toy_lora()) == "default_1"


def test_set_adapters_weights_per_component():
    spread = weights_per_component(["a", "b"], [0.5, {"unet": 0.2}], ["unet", "text_encoder"])
    assert spread == {"unet": {"a": 0.5, "b": 0.2}, "text_encoder": {"a": 0.5, "b": 1.0}}
    assert weights_per_component(["a"], None, ["unet"]) == {"unet": {"a": 1.0}}
    with pytest.raises(LoraError, match="2 weights for 1 adapters"):
        weights_per_component(["a"], [1, 2], ["unet"])
    with pytest.raises(LoraError, match="unknown component.*text_encoder_2"):
        weights_per_component(["a"], {"text_encoder_2": 1.0}, ["unet", "text_encoder"])


def test_files_safetensors_and_bin_and_pickles_refused(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    state = toy_lora("kohya", alpha=2.0)
    save_file(state, tmp_path / "pytorch_lora_weights.safetensors")
    torch.save(state, tmp_path / "style.bin")
    one, two, three = Toy(), Toy(), Toy()
    load(one, str(tmp_path))
    lora.load_lora({"unet": two}, str(tmp_path / "style.bin"))
    monkeypatch.chdir(tmp_path)
    lora.load_lora({"unet": three}, "style.bin")  # a file here, not a Hub repo of that name
    with torch.no_grad():
        assert torch.equal(one(X), two(X)) and torch.equal(one(X), three(X))
    torch.save({"lora_unet_proj.lora_down.weight": Toy()}, tmp_path / "evil.bin")  # a pickled object, not tensors
    with pytest.raises(CorruptedFileError, match="evil.bin"):
        lora.load_lora({"unet": Toy()}, str(tmp_path), weight_name="evil.bin")


def test_diffusers_metadata_gives_the_alpha(tmp_path):
    import json

    from safetensors.torch import save_file

    metadata = {"lora_adapter_metadata": json.dumps({"unet.r": 2, "unet.lora_alpha": 1})}  # as save_lora_weights
    save_file(toy_lora("peft"), tmp_path / "pytorch_lora_weights.safetensors", metadata=metadata)
    with_metadata, kohya = Toy(), Toy()
    load(with_metadata, str(tmp_path))
    load(kohya, toy_lora("kohya", alpha=1.0))
    with torch.no_grad():
        assert torch.equal(with_metadata(X), kohya(X))


def test_new_weights_on_a_fused_model_unfuse_it_first():
    model, reference = Toy(), Toy()
    load(model, toy_lora())
    load(reference, toy_lora())
    lora.fuse(model)
    lora.set_weights(model, {"a": 0.25})
    lora.set_weights(reference, {"a": 0.25})
    assert not lora.is_fused(model)
    with torch.no_grad():
        assert torch.equal(model(X), reference(X))
