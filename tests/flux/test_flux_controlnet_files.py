"""FLUX.1 ControlNets in one file, as ComfyUI keeps them: XLabs' own layout (Black Forest Labs' block names,
``pos_embed_input``, ``input_hint_block.0`` ... ``.14``) and diffusers' (InstantX's and Union's weights without their
config.json). Each equals, bitwise (tolerance 0), the model ``from_pretrained`` reads from diffusers' folder of the
same weights, which test_flux_controlnet.py holds to diffusers' own model; the config is read off the shapes."""

import pytest
import torch
from safetensors.torch import save_file
from tiny_flux import DOUBLE, DOUBLE_NORMS, TOP, reference_controlnet

from diffblocks.components import FluxControlNetModel
from diffblocks.components.errors import ConfigError

# FLUX.1's heads (128 channels in three rotary axes): what a file's shapes must show for its config to be read
HEADS = dict(attention_head_dim=128, num_attention_heads=1, axes_dims_rope=(16, 56, 56))
KINDS = {"xlabs": dict(num_layers=2, num_single_layers=0, conditioning_embedding_channels=16),
         "instantx": dict(num_layers=1, num_single_layers=2), "union": dict(num_mode=3)}
HINT = {"conv_in": 0, "conv_out": 14, **{f"blocks.{i}": 2 * (i + 1) for i in range(6)}}  # ours -> XLabs' index


def to_xlabs(ours: dict, layers: int) -> dict:
    """A ControlNet's tensors (diffusers' names) in XLabs' layout: the trunk as Black Forest Labs names it (fused
    q/k/v), the hint encoder's convolutions by their place in XLabs' Sequential."""
    out = {}

    def fuse(name, *parts):
        for param in ("weight", "bias"):
            out[f"{name}.{param}"] = torch.cat([ours[f"{part}.{param}"] for part in parts]).contiguous()

    for name, part in TOP:
        if f"{part}.weight" in ours:  # no final layer in a ControlNet
            fuse(name, part)
    for i in range(layers):
        for name, *parts in DOUBLE:
            fuse(f"double_blocks.{i}.{name}", *(f"transformer_blocks.{i}.{part}" for part in parts))
        for name, part in DOUBLE_NORMS:
            out[f"double_blocks.{i}.{name}.scale"] = ours[f"transformer_blocks.{i}.{part}.weight"]
        fuse(f"controlnet_blocks.{i}", f"controlnet_blocks.{i}")
    fuse("pos_embed_input", "controlnet_x_embedder")
    for name, index in HINT.items():
        fuse(f"input_hint_block.{index}", f"input_hint_block.{name}")
    return out


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """``{kind: (the folder diffusers saved it in, the one file of the same weights)}``."""
    found = {}
    for kind, config in KINDS.items():
        folder = tmp_path_factory.mktemp(kind)
        reference = reference_controlnet(folder, **HEADS, **config)
        tensors = reference.state_dict()
        if kind == "xlabs":
            tensors = to_xlabs(tensors, config["num_layers"])
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / f"{kind}.safetensors"))
        found[kind] = folder, folder / f"{kind}.safetensors"
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_one_file_is_the_model_its_folder_holds(kind, nets):
    folder, file = nets[kind]
    expected = FluxControlNetModel.from_pretrained(folder)
    model = FluxControlNetModel.from_single_file(file)
    assert {k: v for k, v in model.config.items() if not k.startswith("_") and k != "patch_size"} == {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in expected.config.items()
        if not k.startswith("_") and k != "patch_size"}
    theirs = expected.state_dict()
    assert model.state_dict().keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())


def test_heads_of_another_size_need_a_config(tmp_path):
    reference = reference_controlnet(tmp_path, num_layers=1, num_single_layers=1)  # heads of 16 channels
    save_file(reference.state_dict(), str(tmp_path / "small.safetensors"))
    with pytest.raises(ConfigError, match="heads of 16 channels, not FLUX.1's 128"):
        FluxControlNetModel.from_single_file(tmp_path / "small.safetensors")
    model = FluxControlNetModel.from_single_file(tmp_path / "small.safetensors", config=tmp_path)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_node_and_the_cli_take_the_file(nets, tmp_path, capsys):
    """LoadFluxControlNet takes the file as it takes the folder; so does ``run --controlnet`` (before, refused)."""
    from PIL import Image
    from test_cli import run_cli
    from tiny_flux import make_flux_repo
    from tiny_models import make_image

    from diffblocks.nodes import ArtifactStore, Executor

    folder, file = nets["instantx"]
    loaded = {source: Executor(artifacts=ArtifactStore(tmp_path)).run({"nodes": {"cn": {
        "type": "LoadFluxControlNet", "inputs": {"repo": str(source)}}}})["cn"]["controlnet"] for source in (folder, file)}
    assert all(torch.equal(v, loaded[folder].state_dict()[k]) for k, v in loaded[file].state_dict().items())

    repo = make_flux_repo(tmp_path / "flux", dev=True, transformer=HEADS)
    make_image(5, size=32).save(tmp_path / "edges.png")
    common = ["--prompt", "a cat", "--model", str(repo), "--preset", "flux", "--control-image", str(tmp_path / "edges.png"), "--height",
              "32", "--width", "32", "--steps", "2", "--device", "cpu", "--no-progress"]
    for source in (folder, file):
        code, _, err = run_cli(capsys, "run", *common, "--controlnet", str(source), "--out",
                               str(tmp_path / f"{source.name}.png"))
        assert code == 0, err
    assert Image.open(tmp_path / f"{folder.name}.png").tobytes() == Image.open(tmp_path / f"{file.name}.png").tobytes()
