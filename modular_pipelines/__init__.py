"""The core: params, states, block types, graph, ModularPipeline, hub I/O, remote code."""

from ..components.spec import ComponentSpec, ConfigSpec
from .auto import AutoPipelineBlocks
from .block import ModularPipelineBlocks
from .insertable import InsertableDict
from .loop import LoopSequentialPipelineBlocks
from .params import NO_DEFAULT, InputParam, OutputParam
from .pipeline import ModularPipeline
from .sequential import SequentialPipelineBlocks
from .state import BlockState, PipelineState

__all__ = [
    "AutoPipelineBlocks",
    "BlockState",
    "ComponentSpec",
    "ConfigSpec",
    "InputParam",
    "InsertableDict",
    "LoopSequentialPipelineBlocks",
    "ModularPipeline",
    "ModularPipelineBlocks",
    "NO_DEFAULT",
    "OutputParam",
    "PipelineState",
    "SequentialPipelineBlocks",
]
