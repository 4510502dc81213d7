"""LyCORIS' LoHa and LoKr files (kohya's names, as Civitai shares them) on a plain torch module: the weight delta
A1111 and ComfyUI compute from their factors, written out here (a Hadamard product of two low-rank products; a
Kronecker product of two factors, whole or low-rank; Tucker cores on convolutions), scaled by alpha over the rank
of the low-rank factors. Unfused, PEFT's layers compute ``base(x) + x @ delta`` where these tests add the delta
into the weight: the same numbers up to float rounding (atol 1e-5); fused, the weights are those by hand."""

import pytest
import torch
from torch import nn

from diffblocks.components import lora
from diffblocks.components.errors import LoraError

G = torch.Generator().manual_seed(3)


def rand(*shape):
    return 0.3 * torch.randn(*shape, generator=G)  # deltas of the weights' size, as trained ones are


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(6, 8)
        self.conv = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):  # x: (n, 6, h, w)
        return self.conv(self.proj(x.movedim(1, -1)).movedim(-1, 1))


X = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(1))


def loha(name, out, inner, rank=2, alpha=None, tucker=None):
    """A LoHa's factors for a layer of ``out`` rows and ``inner`` columns (a conv's flattened); with ``tucker`` (the
    kernel size), Tucker cores and factors as LyCORIS writes them for a conv."""
    if tucker:
        factors = {"hada_w1_a": rand(rank, out), "hada_w1_b": rand(rank, inner), "hada_w2_a": rand(rank, out),
                   "hada_w2_b": rand(rank, inner), "hada_t1": rand(rank, rank, tucker, tucker),
                   "hada_t2": rand(rank, rank, tucker, tucker)}
    else:
        factors = {"hada_w1_a": rand(out, rank), "hada_w1_b": rand(rank, inner), "hada_w2_a": rand(out, rank),
                   "hada_w2_b": rand(rank, inner)}
    state = {f"lora_unet_{name}.{key}": value for key, value in factors.items()}
    if alpha is not None:
        state[f"lora_unet_{name}.alpha"] = torch.tensor(alpha)
    return state


def factor(state, name, key):
    return state[f"lora_unet_{name}.{key}"]


def loha_delta(state, name, shape):
    f = {key: factor(state, name, key) for key in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")}
    if f"lora_unet_{name}.hada_t1" in state:
        one = torch.einsum("ijkl,ip,jr->prkl", factor(state, name, "hada_t1"), f["hada_w1_a"], f["hada_w1_b"])
        two = torch.einsum("ijkl,ip,jr->prkl", factor(state, name, "hada_t2"), f["hada_w2_a"], f["hada_w2_b"])
        return (one * two).reshape(shape), f["hada_w1_b"].shape[0]
    delta = (f["hada_w1_a"] @ f["hada_w1_b"]) * (f["hada_w2_a"] @ f["hada_w2_b"])
    return delta.reshape(shape), f["hada_w1_b"].shape[0]


def by_hand(model, deltas, x):
    """The model with each delta (a layer name -> the delta, already scaled) added into its weight."""
    proj_w = model.proj.weight + deltas.get("proj", 0)
    h = nn.functional.linear(x.movedim(1, -1), proj_w, model.proj.bias).movedim(-1, 1)
    return nn.functional.conv2d(h, model.conv.weight + deltas.get("conv", 0), model.conv.bias, padding=1)


def load(model, state, name="a"):
    return lora.load_lora({"unet": model}, state, adapter_name=name)


@pytest.mark.parametrize("tucker", [False, True])
def test_a_loha_adds_the_hadamard_product_scaled_by_alpha_over_its_rank(tucker):
    model = Toy()
    state = loha("proj", 8, 6, rank=2, alpha=1.0) | loha("conv", 4, 8 * 9, rank=3, alpha=6.0,
                                                        tucker=3 if tucker else None)
    if tucker:  # Tucker factors take the conv's channels, the cores its kernel
        state["lora_unet_conv.hada_w1_b"] = state["lora_unet_conv.hada_w2_b"] = rand(3, 8)
    proj, proj_rank = loha_delta(state, "proj", (8, 6))
    conv, conv_rank = loha_delta(state, "conv", (4, 8, 3, 3))
    expected = {"proj": proj * (1.0 / proj_rank), "conv": conv * (6.0 / conv_rank)}
    load(model, state)
    with torch.no_grad():
        assert torch.allclose(model(X), by_hand(model, expected, X), atol=1e-5)
        lora.set_weights(model, {"a": 0.4})
        assert torch.allclose(model(X), by_hand(model, {k: 0.4 * v for k, v in expected.items()}, X), atol=1e-5)


def test_a_lokr_adds_the_kronecker_product_scaled_as_its_factors_say():
    """Whole factors (no rank): scale 1 whatever the alpha; a low-rank second factor: alpha over its rank; a conv's
    second factor with its kernel."""
    model = Toy()
    state = {"lora_unet_proj.lokr_w1": rand(2, 3), "lora_unet_proj.lokr_w2": rand(4, 2),
             "lora_unet_proj.alpha": torch.tensor(8.0),  # whole factors: not used
             "lora_unet_conv.lokr_w1": rand(2, 2), "lora_unet_conv.lokr_w2_a": rand(2, 4),
             "lora_unet_conv.lokr_w2_b": rand(4, 4 * 9), "lora_unet_conv.alpha": torch.tensor(2.0)}
    conv_w2 = (state["lora_unet_conv.lokr_w2_a"] @ state["lora_unet_conv.lokr_w2_b"])
    expected = {"proj": torch.kron(state["lora_unet_proj.lokr_w1"], state["lora_unet_proj.lokr_w2"]),
                "conv": torch.kron(state["lora_unet_conv.lokr_w1"], conv_w2).reshape(4, 8, 3, 3) * (2.0 / 4)}
    load(model, state)
    with torch.no_grad():
        assert torch.allclose(model(X), by_hand(model, expected, X), atol=1e-5)
    other, w1, w2 = Toy(), rand(2, 2), rand(2, 4, 3, 3)
    load(other, {"lora_unet_conv.lokr_w1": w1, "lora_unet_conv.lokr_w2": w2})
    kernel = torch.einsum("ab,cdkl->acbdkl", w1, w2).reshape(4, 8, 3, 3)  # the Kronecker product, by its indices
    with torch.no_grad():
        assert torch.allclose(other(X), by_hand(Toy(), {"conv": kernel}, X), atol=1e-5)


def test_a_lora_and_a_loha_on_the_same_layers_add_up_fuse_and_come_off():
    """A LoRA and a LoHa adapting the same modules (a character LoRA with a style LyCORIS): both deltas, at their
    weights; fused, the same; unfused and unloaded, the original tensors and modules, bitwise."""
    model = Toy()
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    down, up = rand(2, 6), rand(8, 2)
    load(model, {"lora_unet_proj.lora_down.weight": down, "lora_unet_proj.lora_up.weight": up}, name="lora")
    state = loha("proj", 8, 6, rank=2)
    load(model, state, name="loha")
    lora.set_weights(model, {"lora": 0.5, "loha": 0.8})
    delta, _ = loha_delta(state, "proj", (8, 6))
    expected = by_hand(Toy(), {"proj": 0.5 * up @ down + 0.8 * delta}, X)
    with torch.no_grad():
        assert torch.allclose(model(X), expected, atol=1e-5)
        lora.fuse(model)
        assert isinstance(model.proj, nn.Linear) and lora.is_fused(model)
        assert torch.allclose(model(X), expected, atol=1e-5)
        lora.unfuse(model)
        assert torch.equal(model.proj.get_base_layer().weight, original["proj.weight"])
        assert torch.allclose(model(X), expected, atol=1e-5)
        lora.delete_adapters(model, ["lora"])
        assert isinstance(model.proj.base_layer, nn.Linear)  # the LoRA's layer stepped out from under the LoHa's
        lora.set_weights(model, {"loha": 0.8})
        assert torch.allclose(model(X), by_hand(Toy(), {"proj": 0.8 * delta}, X), atol=1e-5)
        load(model, {"lora_unet_proj.lora_down.weight": down, "lora_unet_proj.lora_up.weight": up}, name="again")
        lora.unload(model)
    assert isinstance(model.proj, nn.Linear) and isinstance(model.conv, nn.Conv2d) and not lora.loaded_adapters(model)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in original.items())


def test_factors_that_do_not_make_the_layers_weight_change_nothing():
    model = Toy()
    state = loha("proj", 8, 6) | loha("conv", 4, 7)  # the conv's weight has 8 * 9 columns
    with pytest.raises(LoraError, match=r"do not fit .*no module of that name and shape.*lora_unet_conv\.hada"):
        load(model, state)
    missing = {"lora_unet_proj.lokr_w1": rand(2, 3)}  # no second factor
    with pytest.raises(LoraError, match="lora_unet_proj.lokr_w1"):
        load(model, missing)
    assert isinstance(model.proj, nn.Linear) and isinstance(model.conv, nn.Conv2d) and not lora.loaded_adapters(model)


def test_a_loha_file_on_the_sd_preset_draws_what_its_weights_by_hand_draw(sd_repo, tmp_path):
    """A LoHa over the UNet's attention projections and a text encoder layer (kohya's names, a safetensors file):
    fused, the images of the preset whose weights are W + weight * alpha/r * delta, by hand (max abs difference
    <= 1e-5, float32); unfused, within 1e-4 (PEFT adds x @ delta instead)."""
    from safetensors.torch import save_file
    from tiny_models import build_pipeline

    from diffblocks.presets import stable_diffusion

    G.manual_seed(7)  # the same factors however the tests before drew theirs
    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    targets = {("unet", name): module for name, module in pipe.unet.named_modules()
               if name.endswith(("attn1.to_q", "attn2.to_k", "attn1.to_out.0"))}
    targets[("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj")] = \
        pipe.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj")
    state, expected = {}, {}
    for (component, name), module in targets.items():
        out, inner = module.weight.shape
        prefix = "lora_unet_" if component == "unet" else "lora_te_"
        one = loha(name, out, inner, rank=2, alpha=1.0)
        state |= {prefix + key[len("lora_unet_"):]: value for key, value in one.items()}
        delta, rank = loha_delta(one, name, module.weight.shape)
        expected[component, name] = module.weight + delta * torch.tensor(0.7 * 1.0 / rank)
    state = {key.replace(".", "_", key.count(".") - 1): value for key, value in state.items()}  # kohya: "_" joins
    save_file(state, str(tmp_path / "loha.safetensors"))

    def image(p):
        return p(prompt="a cat", num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0),
                 output="images")

    plain = image(pipe)
    pipe.loader.load_lora_weights(str(tmp_path / "loha.safetensors"), adapter_name="loha")
    pipe.loader.set_adapters("loha", 0.7)
    unfused = image(pipe)
    pipe.loader.fuse_lora()
    fused = image(pipe)
    by_hand = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    with torch.no_grad():
        for (component, name), weight in expected.items():
            module = getattr(by_hand, component).get_submodule(name.removeprefix("text_model."))
            module.weight.copy_(weight)
    reference = image(by_hand)
    assert (fused - reference).abs().max() <= 1e-5
    assert (unfused - reference).abs().max() <= 1e-4
    assert (plain - reference).abs().max() > 2e-3  # the LoHa changed the image, well past the tolerances


@pytest.mark.parametrize("width, family", [(768, "sd15"), (2048, "sdxl"), (1000, None)])
def test_a_lycoris_files_family_is_read_off_its_cross_attention_width(tmp_path, width, family):
    """As a LoRA's: what its cross-attention's key projection takes (a LoKr's, its two factors' widths multiplied),
    so that a LyCORIS file for another family is refused before anything runs, as a LoRA is."""
    from safetensors.torch import save_file

    from diffblocks.components.families import lora_family

    layer = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{layer}.hada_w1_a": torch.zeros(640, 4), f"{layer}.hada_w1_b": torch.zeros(4, width)},
              str(tmp_path / "loha.safetensors"))
    save_file({f"{layer}.lokr_w1": torch.zeros(8, 8), f"{layer}.lokr_w2_a": torch.zeros(80, 4),
               f"{layer}.lokr_w2_b": torch.zeros(4, width // 8)}, str(tmp_path / "lokr.safetensors"))
    assert lora_family(tmp_path / "loha.safetensors") == family
    assert lora_family(tmp_path / "lokr.safetensors") == (family if width % 8 == 0 else None)
