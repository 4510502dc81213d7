"""The catalog: every shipped block, preset, guider and scheduler is a node type whose schema comes from its
declarations and accepts its own defaults."""

import inspect
import json

import pytest

import diffblocks.blocks.stable_diffusion as sd_blocks
import diffblocks.blocks.stable_diffusion_xl as sdxl_blocks
from diffblocks import InputParam, ModularPipelineBlocks, OutputParam
from diffblocks.components.schedulers import SCHEDULERS
from diffblocks.guiders import GUIDERS
from diffblocks.nodes import catalog, node_type, node_types, register
from diffblocks.nodes.block_nodes import BlockNode
from diffblocks.presets.names import PRESETS


def runnable_block_classes():
    for module in (sd_blocks, sdxl_blocks):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ModularPipelineBlocks) and "block_state" not in inspect.signature(cls.__call__).parameters:
                yield cls


def test_every_block_preset_guider_and_scheduler_is_a_node_type():
    names = set(catalog())
    blocks = {cls.__name__ for cls in runnable_block_classes()} - {"StableDiffusionDenoiseLoopWrapper",
                                                                    "StableDiffusionXLDenoiseLoopWrapper"}
    assert blocks <= names
    assert {f"preset:{p}" for p in PRESETS} <= names
    assert set(GUIDERS) <= names and set(SCHEDULERS) <= names
    assert {"LoadComponents", "LoadImage", "DDPMDenoiseStep"} <= names
    assert "StableDiffusionLoopDenoiser" not in names  # runs only inside its loop


def test_the_catalog_is_json_with_the_wire_shape():
    wire = json.loads(json.dumps(catalog(), allow_nan=False))  # strict JSON: browsers refuse Infinity
    for name, entry in wire.items():
        assert set(entry) == {"inputs", "outputs", "category", "description"}, name
        for spec in entry["inputs"].values():
            assert set(spec) == {"schema", "required", "socket"}
        assert all(set(o) == {"socket"} for o in entry["outputs"].values())


@pytest.mark.parametrize("name", sorted(node_types()))
def test_each_schema_accepts_its_own_defaults(name):
    node = node_type(name)
    for input_name, spec in node.inputs.items():
        if spec.schema.get("default") is not None:
            assert node.check_value(input_name, spec.schema["default"]) is None, (name, input_name)


def test_schemas_carry_the_declared_constraints_sockets_and_components():
    steps = catalog()["StableDiffusionSetTimestepsStep"]
    number = steps["inputs"]["num_inference_steps"]["schema"]["anyOf"][0]
    assert number["type"] == "integer" and number["exclusiveMinimum"] == 0
    assert steps["inputs"]["scheduler"]["socket"] == "scheduler" and steps["outputs"]["scheduler"]["socket"] == "scheduler"
    latents = catalog()["StableDiffusionPrepareLatentsStep"]["inputs"]
    assert latents["seed"]["schema"]["type"] == "integer" and latents["generator"]["socket"] == "generator"
    assert latents["unet"]["socket"] == "UNet2DConditionModel" and latents["components"]["socket"] == "components"
    assert latents["latents"]["socket"] == "tensor" and latents["batch_size"]["required"] is True
    assert "step_callback" not in catalog()["StableDiffusionDenoiseStep"]["inputs"]
    img2img = catalog()["preset:sd15-image2image"]
    assert img2img["inputs"]["image"]["socket"] == "image" and img2img["outputs"]["images"]["socket"] == "image"
    assert catalog()["ClassifierFreeGuidance"]["inputs"]["guidance_scale"]["schema"]["default"] == 7.5
    loader = catalog()["LoadComponents"]["outputs"]
    assert loader["vae"]["socket"] == "AutoencoderKL" and loader["unet"]["socket"] == "any"  # UNet2DModel for DDPM


def test_a_constant_that_breaks_a_declared_constraint_is_refused():
    node = node_type("StableDiffusionSetTimestepsStep")
    assert "> 0" in node.check_value("num_inference_steps", 0)
    assert node.check_value("num_inference_steps", 4) is None
    assert "integer" in node_type("StableDiffusionPrepareLatentsStep").check_value("seed", -1)
    assert node_type("ClassifierFreeGuidance").check_value("guidance_scale", "high") is not None


class Brighten(ModularPipelineBlocks):
    description = "add a constant to the latents"
    inputs = [InputParam("latents", required=True), InputParam("amount", type_hint=float, default=0.1)]
    intermediate_outputs = [OutputParam("latents")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.latents = block_state.latents + block_state.amount
        self.set_block_state(state, block_state)
        return components, state


def test_a_registered_block_joins_the_catalog():
    name = register(Brighten)
    entry = catalog()[name]
    assert entry["category"] == "custom" and entry["description"] == "add a constant to the latents"
    assert entry["inputs"]["amount"]["schema"]["default"] == 0.1
    assert isinstance(node_type(name), BlockNode)


def test_a_trusted_modular_repo_adds_its_blocks(tmp_path):
    import importlib.util
    from pathlib import Path

    from diffblocks.components.errors import RemoteCodeError
    from diffblocks.nodes import Executor, register_repo

    spec = importlib.util.spec_from_file_location("hub_tests", Path(__file__).parents[1] / "modular_pipelines" / "test_hub.py")
    hub_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub_tests)
    repo = hub_tests.custom_repo(tmp_path)
    with pytest.raises(RemoteCodeError):
        register_repo(str(repo))
    names = register_repo(str(repo), trust_remote_code=True)
    assert names == [f"repo:{repo}", "Double"] and set(names) <= set(catalog())
    outputs = Executor().run({"nodes": {"d": {"type": "Double", "inputs": {"x": 4}}}})
    assert outputs["d"]["y"] == 8
