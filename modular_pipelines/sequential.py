"""SequentialPipelineBlocks: sub-blocks run one after another over the same PipelineState."""

from __future__ import annotations

from .block import child_path, run_block
from .composite import CompositeBlocks, sequential_inputs
from .params import InputParam
from .state import PipelineState


class SequentialPipelineBlocks(CompositeBlocks):
    """Runs its sub-blocks in order; each sees what the earlier ones wrote.

    Its inputs are the sub-blocks' inputs minus what an earlier sub-block outputs (see
    :mod:`.composite` for the rules).
    """

    @property
    def inputs(self) -> list[InputParam]:
        return sequential_inputs(self.sub_blocks.values())

    def __call__(self, components, state: PipelineState):
        for name, block in self.sub_blocks.items():
            run_block(block, components, state, child_path(name))
        return components, state

    def _execution_blocks(self, provided: set[str]) -> "SequentialPipelineBlocks | None":
        provided = set(provided)
        chosen = []
        for name, block in self.sub_blocks.items():
            selected = block._execution_blocks(provided)
            if selected is None:
                continue
            chosen.append((name, selected))
            provided.update(selected.intermediate_output_names)
        if not chosen:
            return None
        return SequentialPipelineBlocks.from_blocks_dict(chosen, description=self.description)
