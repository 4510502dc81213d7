"""LoRA on the FLUX.1 text-to-image preset, in the layouts FLUX LoRAs come in.

- diffusers / PEFT (``transformer.<module>.lora_A.weight``, ``text_encoder.<module>...``): against diffusers'
  ``FluxPipeline.load_lora_weights`` / ``set_adapters`` on the same state dict.
- kohya / sd-scripts, with Black Forest Labs' original module names (``lora_unet_double_blocks_0_img_attn_qkv``):
  against diffusers' pipeline with the update added to its weights by hand, computed in the original's fused
  layout (q, k and v one matrix; the single blocks' linear1 also holding the MLP's input; the last modulation
  giving shift before scale) and cut into diffusers' modules. (diffusers' own kohya conversion assumes FLUX.1's
  full-size widths and block counts, so it cannot read a LoRA for the tiny model.)
- XLabs' (``double_blocks.0.processor.qkv_lora1.down.weight``): against diffusers.
- kohya's layout with diffusers' module names (``lora_transformer_...``): against the same LoRA in diffusers' layout.

Tolerance: max abs difference <= 1e-4 on output_type="pt" images (float32, CPU); "bitwise": torch.equal.
"""

import re

import pytest
import torch
from tiny_flux import assert_close

from diffblocks import SequentialPipelineBlocks
from diffblocks.components.errors import LoraError
from diffblocks.components.lora.inject import LOADED_ATTR
from diffblocks.presets import flux

TOL = 1e-4
CALL = dict(num_inference_steps=2, output_type="pt", height=32, width=32, max_sequence_length=16, guidance_scale=3.5)
# the original's modules -> diffusers' (the order of the original's output rows)
DOUBLE = {"img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"], "img_attn_proj": ["attn.to_out.0"],
          "img_mlp_0": ["ff.net.0.proj"], "img_mlp_2": ["ff.net.2"], "img_mod_lin": ["norm1.linear"],
          "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], "txt_attn_proj": ["attn.to_add_out"],
          "txt_mlp_0": ["ff_context.net.0.proj"], "txt_mlp_2": ["ff_context.net.2"], "txt_mod_lin": ["norm1_context.linear"]}
SINGLE = {"linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], "linear2": ["proj_out"],
          "modulation_lin": ["norm.linear"]}
TOP = {"img_in": ["x_embedder"], "txt_in": ["context_embedder"],
       "time_in_in_layer": ["time_text_embed.timestep_embedder.linear_1"],
       "vector_in_out_layer": ["time_text_embed.text_embedder.linear_2"], "final_layer_linear": ["proj_out"],
       "final_layer_adaLN_modulation_1": ["norm_out.linear"]}

pytestmark = pytest.mark.usefixtures("one_thread")


class Pair:
    """Our FLUX.1 pipeline and diffusers' on the same tiny repo, and their images for the same call."""

    def __init__(self, repo):
        import diffusers

        self.ours = SequentialPipelineBlocks.from_blocks_dict(flux.TEXT2IMAGE_BLOCKS).init_pipeline(repo)
        self.ours.load_components()
        self.ours.set_progress_bar_config(disable=True)
        self.ref = diffusers.FluxPipeline.from_pretrained(repo)
        self.ref.set_progress_bar_config(disable=True)
        self.base = self.image()

    def image(self):
        return self.ours(prompt="a cat", generator=torch.Generator().manual_seed(0), output="images", **CALL)

    def ref_image(self):
        return self.ref("a cat", generator=torch.Generator().manual_seed(0), **CALL).images


@pytest.fixture(scope="module")
def pair(flux_dev_repo):
    return Pair(flux_dev_repo)


def linears(model, pattern=""):
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and re.search(pattern, n)}


def peft_lora(pipe, seed: int, rank: int = 4) -> dict:
    """A random LoRA on every Linear of the transformer and the CLIP text encoder's attention, diffusers' layout."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for component, pattern in (("transformer", ""), ("text_encoder", r"self_attn\.(q|k|v|out)_proj")):
        for name, module in linears(getattr(pipe, component), pattern).items():
            out[f"{component}.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.1
            out[f"{component}.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.1
    return out



def test_a_diffusers_layout_lora_matches_diffusers_at_weights_1_and_half_and_unloads_bitwise(pair):
    lora = peft_lora(pair.ref, seed=1)
    pair.ours.loader.load_lora_weights(dict(lora), adapter_name="style")
    pair.ref.load_lora_weights(dict(lora), adapter_name="style")
    try:
        with_lora = pair.image()
        assert (with_lora - pair.base).abs().max() > 1e-2  # the LoRA does change the image
        assert_close(with_lora, pair.ref_image())
        assert set(pair.ours.loader.get_list_adapters()) == {"transformer", "text_encoder"}
        pair.ours.loader.set_adapters("style", {"transformer": 0.5, "text_encoder": 1.0})
        pair.ref.set_adapters("style", {"transformer": 0.5, "text_encoder": 1.0})
        assert_close(pair.image(), pair.ref_image())
    finally:
        pair.ours.loader.unload_lora_weights()
        pair.ref.unload_lora_weights()
    assert torch.equal(pair.image(), pair.base)


def original_layout(transformer) -> dict[str, list[str]]:
    """The original's module names (underscore-joined) and the diffusers modules each one is."""
    names = {f"double_blocks_{i}_{k}": [f"transformer_blocks.{i}.{p}" for p in v]
             for i in range(len(transformer.transformer_blocks)) for k, v in DOUBLE.items()}
    names.update({f"single_blocks_{i}_{k}": [f"single_transformer_blocks.{i}.{p}" for p in v]
                  for i in range(len(transformer.single_transformer_blocks)) for k, v in SINGLE.items()})
    return {**names, **TOP}


def kohya_lora(transformer, seed: int, rank: int = 4) -> dict:
    """A random kohya LoRA on every module of the original layout, alphas 1 to 8 (scale alpha / rank)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (flat, parts) in enumerate(original_layout(transformer).items()):
        modules = [transformer.get_submodule(p) for p in parts]
        rows = sum(m.out_features for m in modules)
        out[f"lora_unet_{flat}.lora_down.weight"] = torch.randn(rank, modules[0].in_features, generator=g) * 0.1
        out[f"lora_unet_{flat}.lora_up.weight"] = torch.randn(rows, rank, generator=g) * 0.1
        out[f"lora_unet_{flat}.alpha"] = torch.tensor(float(1 + i % 8))
    return out


def merged_by_hand(transformer, lora: dict) -> None:
    """Add each LoRA's update, computed as the original's fused matrix, to the rows of ``transformer``'s modules."""
    layout = original_layout(transformer)
    with torch.no_grad():
        for key in (k for k in lora if k.endswith(".lora_down.weight")):
            flat = key.removeprefix("lora_unet_").removesuffix(".lora_down.weight")
            down, up = lora[key], lora[f"lora_unet_{flat}.lora_up.weight"]
            delta = lora[f"lora_unet_{flat}.alpha"].item() / down.shape[0] * up @ down
            if flat == "final_layer_adaLN_modulation_1":  # the original: shift, scale; diffusers: scale, shift
                shift, scale = delta.chunk(2)
                delta = torch.cat([scale, shift])
            modules = [transformer.get_submodule(p) for p in layout[flat]]
            for module, rows in zip(modules, delta.split([m.out_features for m in modules])):
                module.weight += rows


def test_a_kohya_lora_with_the_original_names_equals_its_update_merged_by_hand(pair, flux_dev_repo):
    import diffusers

    lora = kohya_lora(pair.ref.transformer, seed=2)
    merged = diffusers.FluxPipeline.from_pretrained(flux_dev_repo)
    merged.set_progress_bar_config(disable=True)
    merged_by_hand(merged.transformer, lora)
    pair.ours.loader.load_lora_weights(dict(lora), adapter_name="kohya")
    try:
        with_lora = pair.image()
        assert (with_lora - pair.base).abs().max() > 1e-2
        assert_close(with_lora, merged("a cat", generator=torch.Generator().manual_seed(0), **CALL).images)
        adapted = sum(map(len, original_layout(pair.ref.transformer).values()))  # every part of every fused layer
        assert len(getattr(pair.ours.transformer, LOADED_ATTR)["kohya"]) == adapted
        pair.ours.loader.fuse_lora()  # the cut-up layers fuse into their own weights
        assert_close(pair.image(), with_lora)
        pair.ours.loader.unfuse_lora()
        assert torch.equal(pair.image(), with_lora)
    finally:
        pair.ours.loader.unload_lora_weights()
    assert torch.equal(pair.image(), pair.base)


# the original's module names, dotted (as its state dict names them)
DOTTED = {**{f"{s}_{k}": f"{s}_{k.replace('_', '.')}" for s in ("img", "txt")
             for k in ("attn_qkv", "attn_proj", "mlp_0", "mlp_2", "mod_lin")},
          "linear1": "linear1", "linear2": "linear2", "modulation_lin": "modulation.lin", "img_in": "img_in",
          "txt_in": "txt_in", "time_in_in_layer": "time_in.in_layer", "vector_in_out_layer": "vector_in.out_layer",
          "final_layer_linear": "final_layer.linear", "final_layer_adaLN_modulation_1": "final_layer.adaLN_modulation.1"}


def dotted(flat: str) -> str:
    """``double_blocks_0_img_attn_qkv`` -> ``double_blocks.0.img_attn.qkv``."""
    match = re.match(r"^(double|single)_blocks_(\d+)_(.+)$", flat)
    if match is None:
        return DOTTED[flat]
    return f"{match[1]}_blocks.{match[2]}.{DOTTED[match[3]]}"


def test_the_original_names_dotted_with_peft_suffixes_read_as_kohyas(pair):
    """``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` (no alpha: scale 1) is the kohya LoRA with
    ``lora_unet_double_blocks_0_img_attn_qkv`` at alpha = rank."""
    kohya = {k: v for k, v in kohya_lora(pair.ref.transformer, seed=7).items() if not k.endswith(".alpha")}
    peft = {}
    for key, value in kohya.items():
        flat, role = key.removeprefix("lora_unet_").split(".", 1)
        peft[f"diffusion_model.{dotted(flat)}.lora_{'A' if role == 'lora_down.weight' else 'B'}.weight"] = value
    alphas = {k.replace("lora_down.weight", "alpha"): torch.tensor(4.0) for k in kohya if k.endswith("lora_down.weight")}
    images = []
    for lora in (peft, {**kohya, **alphas}):
        pair.ours.loader.load_lora_weights(lora, adapter_name="original")
        images.append(pair.image())
        pair.ours.loader.unload_lora_weights()
    assert (images[0] - pair.base).abs().max() > 1e-2
    assert torch.equal(images[0], images[1])


def test_an_xlabs_lora_matches_diffusers(pair):
    g = torch.Generator().manual_seed(5)
    lora = {}
    for i in range(len(pair.ref.transformer.transformer_blocks)):  # XLabs train the double-stream attention
        for layer, rows in (("qkv_lora1", 96), ("qkv_lora2", 96), ("proj_lora1", 32), ("proj_lora2", 32)):
            lora[f"double_blocks.{i}.processor.{layer}.down.weight"] = torch.randn(4, 32, generator=g) * 0.3
            lora[f"double_blocks.{i}.processor.{layer}.up.weight"] = torch.randn(rows, 4, generator=g) * 0.3
    pair.ours.loader.load_lora_weights(dict(lora), adapter_name="xlabs")
    pair.ref.load_lora_weights(dict(lora), adapter_name="xlabs")
    try:
        with_lora = pair.image()
        assert (with_lora - pair.base).abs().max() > 1e-3  # one block's attention: a smaller change
        assert_close(with_lora, pair.ref_image())
    finally:
        pair.ours.loader.unload_lora_weights()
        pair.ref.unload_lora_weights()


def test_a_kohya_lora_with_diffusers_names_equals_its_diffusers_layout(pair):
    """``lora_transformer_<module>`` (kohya's layout, diffusers' module names) with alpha 2 at rank 4 is the
    diffusers-layout LoRA with its up matrices halved."""
    peft = {k: v for k, v in peft_lora(pair.ref, seed=6).items() if k.startswith("transformer.")}
    kohya = {}
    for key, value in peft.items():
        module, role = key.removeprefix("transformer.").rsplit(".lora_", 1)
        flat = "lora_transformer_" + module.replace(".", "_")
        kohya[f"{flat}.lora_{'down' if role.startswith('A') else 'up'}.weight"] = value
        kohya[f"{flat}.alpha"] = torch.tensor(2.0)
    halved = {k: v * 0.5 if ".lora_B." in k else v for k, v in peft.items()}
    images = []
    for lora in (kohya, halved):
        pair.ours.loader.load_lora_weights(lora, adapter_name="named")
        images.append(pair.image())
        pair.ours.loader.unload_lora_weights()
    assert (images[0] - pair.base).abs().max() > 1e-2
    assert_close(images[0], images[1])


def test_a_kohya_t5_lora_adapts_the_second_text_encoder(pair):
    name, module = next(iter(linears(pair.ours.text_encoder_2, r"SelfAttention\.q$").items()))
    g = torch.Generator().manual_seed(3)
    down, up = torch.randn(2, module.in_features, generator=g), torch.randn(module.out_features, 2, generator=g)
    x = torch.randn(5, module.in_features, generator=g)
    before = module(x)
    flat = name.replace(".", "_")
    pair.ours.loader.load_lora_weights({f"lora_te3_{flat}.lora_down.weight": down, f"lora_te3_{flat}.lora_up.weight": up,
                                        f"lora_te3_{flat}.alpha": torch.tensor(1.0)}, adapter_name="t5")
    try:
        assert pair.ours.loader.get_list_adapters() == {"text_encoder_2": ["t5"]}
        assert_close(pair.ours.text_encoder_2.get_submodule(name)(x), before + 0.5 * x @ down.T @ up.T)
    finally:
        pair.ours.loader.unload_lora_weights()


def test_a_lora_for_other_widths_or_another_family_is_one_error_and_changes_nothing(pair):
    lora = kohya_lora(pair.ref.transformer, seed=4)
    lora["lora_unet_single_blocks_0_linear1.lora_up.weight"] = torch.zeros(3 * 3072 + 12288, 4)  # FLUX.1's widths
    with pytest.raises(LoraError, match=r"1 key\(s\) do not fit this pipeline \(no module of that name and shape\): "
                                        r"lora_unet_single_blocks_0_linear1.lora_down.weight"):
        pair.ours.loader.load_lora_weights(lora, adapter_name="wide")
    sd15 = {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
            "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4)}
    with pytest.raises(LoraError, match=r"has weights for .unet., which this pipeline does not have or has not loaded "
                                        r"\(loaded: text_encoder, text_encoder_2, transformer\)"):
        pair.ours.loader.load_lora_weights(sd15, adapter_name="sd15")
    assert pair.ours.loader.get_list_adapters() == {}
    assert torch.equal(pair.image(), pair.base)
