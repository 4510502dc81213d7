"""Tiny components for pipeline-loading tests: a config-backed object and tiny transformers parts."""

import json
from pathlib import Path

from diffblocks.components.config import ConfigMixin, register_to_config
from diffblocks.components.spec import ComponentSpec
from diffblocks.modular_pipelines import InputParam, LoopSequentialPipelineBlocks, ModularPipelineBlocks, OutputParam


class Scale(ConfigMixin):
    """A config-only component: multiplies by ``factor``. Loads from ``<repo>/<subfolder>/config.json``."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, factor: float = 2.0):
        self.factor = factor

    @classmethod
    def from_pretrained(cls, path, subfolder=None, revision=None, **kwargs):
        return cls.from_config(cls.load_config(path, subfolder=subfolder, revision=revision))

    def save_pretrained(self, directory):
        self.save_config(directory)


class UsesScale(ModularPipelineBlocks):
    expected_components = [
        ComponentSpec("scale", Scale),
        ComponentSpec("offset", Scale, config={"factor": 0.5}, default_creation_method="from_config"),
    ]
    inputs = [InputParam("x", type_hint=float, required=True)]
    intermediate_outputs = [OutputParam("y")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.y = block_state.x * components.scale.factor + components.offset.factor
        self.set_block_state(state, block_state)
        return components, state


def write_scale_repo(root: Path, factor: float, subfolder: str = "scale") -> Path:
    Scale(factor=factor).save_pretrained(root / subfolder)
    return root


def write_modular_index(root: Path, entries: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "modular_model_index.json").write_text(json.dumps(entries))
    return root


class Plus(ModularPipelineBlocks):
    inputs = [InputParam("x")]
    intermediate_outputs = [OutputParam("z")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.z = block_state.x + 1
        self.set_block_state(state, block_state)
        return components, state


class Count(ModularPipelineBlocks):
    inputs = [InputParam("count", default=0)]
    intermediate_outputs = [OutputParam("count")]

    def __call__(self, components, block_state, i):
        block_state.count += i
        return components, block_state


class CountLoop(LoopSequentialPipelineBlocks):
    loop_inputs = [InputParam("num_steps", type_hint=int, default=2)]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i in range(block_state.num_steps):
            components, block_state = self.loop_step(components, block_state, i=i)
        self.set_block_state(state, block_state)
        return components, state
