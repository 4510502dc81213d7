"""LoopSequentialPipelineBlocks: a wrapper that runs its sub-blocks once per iteration.

The wrapper declares ``loop_inputs``, ``loop_expected_components``, ``loop_intermediate_outputs`` (and
``loop_expected_configs``) and its ``__call__`` drives the loop, calling ``self.loop_step(components,
block_state, **kw)`` each iteration. Loop sub-blocks work on the wrapper's BlockState directly:
``__call__(self, components, block_state, **kw) -> (components, block_state)``.
"""

from __future__ import annotations

from typing import Any

from ..components.spec import ComponentSpec, ConfigSpec
from .block import LOCATED_ERRORS, brief_inputs, child_path
from .composite import CompositeBlocks, sequential_inputs, union_by_name
from .errors import BlockExecutionError
from .params import InputParam, OutputParam
from .state import BlockState


class LoopSequentialPipelineBlocks(CompositeBlocks):
    """A loop over sub-blocks that share one BlockState (e.g. the denoise loop)."""

    loop_inputs: list[InputParam] = []
    loop_expected_components: list[ComponentSpec] = []
    loop_expected_configs: list[ConfigSpec] = []
    loop_intermediate_outputs: list[OutputParam] = []

    @property
    def inputs(self) -> list[InputParam]:
        return sequential_inputs(self.sub_blocks.values(), first=self.loop_inputs)

    @property
    def expected_components(self) -> list[ComponentSpec]:
        return union_by_name([self.loop_expected_components, *(b.expected_components for b in self.sub_blocks.values())])

    @property
    def expected_configs(self) -> list[ConfigSpec]:
        return union_by_name([self.loop_expected_configs, *(b.expected_configs for b in self.sub_blocks.values())])

    @property
    def intermediate_outputs(self) -> list[OutputParam]:
        return union_by_name([self.loop_intermediate_outputs, *(b.intermediate_outputs for b in self.sub_blocks.values())])

    def loop_step(self, components: Any, block_state: BlockState, **kwargs: Any):
        """Run every sub-block once on ``block_state`` (keyword arguments such as ``i``, ``t`` go to each)."""
        for name, block in self.sub_blocks.items():
            try:
                components, block_state = block(components, block_state, **kwargs)
            except LOCATED_ERRORS:
                raise
            except Exception as err:
                raise BlockExecutionError.failed(
                    child_path(name), type(block).__name__, brief_inputs(block, block_state.__dict__), err
                ) from err
        return components, block_state

    def __call__(self, components, state):
        raise NotImplementedError(
            f"{type(self).__name__} must implement __call__: get the block state, call self.loop_step(...) "
            "once per iteration, then set the block state"
        )
