"""diffblocks: build diffusion pipelines out of declarative blocks."""

__version__ = "0.1.0"

from .modular_pipelines import (  # noqa: E402
    AutoPipelineBlocks,
    BlockState,
    ComponentSpec,
    ConfigSpec,
    InputParam,
    InsertableDict,
    LoopSequentialPipelineBlocks,
    ModularPipeline,
    ModularPipelineBlocks,
    OutputParam,
    PipelineState,
    SequentialPipelineBlocks,
)


def __getattr__(name):
    # heavier objects load on first use: the manager, models and guiders
    if name == "ComponentsManager":
        from .components.manager import ComponentsManager

        return ComponentsManager
    raise AttributeError(f"module 'diffblocks' has no attribute '{name}'")


__all__ = [
    "AutoPipelineBlocks",
    "BlockState",
    "ComponentSpec",
    "ComponentsManager",
    "ConfigSpec",
    "InputParam",
    "InsertableDict",
    "LoopSequentialPipelineBlocks",
    "ModularPipeline",
    "ModularPipelineBlocks",
    "OutputParam",
    "PipelineState",
    "SequentialPipelineBlocks",
]
