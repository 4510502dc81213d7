"""LoopSequentialPipelineBlocks: a wrapper that runs its sub-blocks once per iteration.

The wrapper declares ``loop_inputs`` (``loop_intermediate_inputs``, the design document's name for inputs
an earlier block produces, are read the same way and join them), ``loop_expected_components``,
``loop_intermediate_outputs`` (and ``loop_expected_configs``) and its ``__call__`` drives the loop, calling
``self.loop_step(components, block_state, **kw)`` each iteration. Loop sub-blocks work on the wrapper's
BlockState directly: ``__call__(self, components, block_state, **kw) -> (components, block_state)``.

Required inputs: the wrapper's own ``loop_inputs`` must be in the pipeline state when it starts. A
sub-block's required input is checked just before that sub-block runs, against the shared block state:
an earlier sub-block may set it there without declaring it as an output (the design document's
Differential Diffusion ``before_denoiser`` sets ``scaled_latents`` so), which cannot be known beforehand.
The aggregated ``inputs`` still say what the declarations say.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..components.spec import ComponentSpec, ConfigSpec
from .block import LOCATED_ERRORS, brief_inputs, child_path, current_path
from .composite import CompositeBlocks, sequential_inputs, union_by_name
from ..components.errors import BlockExecutionError, LoopInputMissingError, MissingInputError
from .params import InputParam, OutputParam
from .state import BlockState

# set while a loop wrapper fills its block state: sub-block inputs are then not demanded (see module doc)
_filling: ContextVar[bool] = ContextVar("diffblocks_loop_filling", default=False)


class _LoopInputs:
    """``loop_inputs`` as a class wrote it (a list or a property), joined by its ``loop_intermediate_inputs``."""

    def __init__(self, declared: Any):
        self.declared = declared

    def __get__(self, obj: Any, owner: type) -> Any:
        declared = self.declared.__get__(obj, owner) if hasattr(self.declared, "__get__") else self.declared
        if isinstance(declared, property):  # a property read on the class: as Python gives it
            return declared
        extra = getattr(obj if obj is not None else owner, "loop_intermediate_inputs", None)
        if not isinstance(extra, (list, tuple)) or not extra:
            return declared
        names = {p.name for p in declared}
        return [*declared, *(p for p in extra if p.name not in names)]


class LoopSequentialPipelineBlocks(CompositeBlocks):
    """A loop over sub-blocks that share one BlockState (e.g. the denoise loop)."""

    loop_inputs: list[InputParam] = _LoopInputs([])
    loop_intermediate_inputs: list[InputParam] = []
    loop_expected_components: list[ComponentSpec] = []
    loop_expected_configs: list[ConfigSpec] = []
    loop_intermediate_outputs: list[OutputParam] = []

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("loop_inputs")
        if declared is not None and not isinstance(declared, _LoopInputs):
            cls.loop_inputs = _LoopInputs(declared)

    @property
    def inputs(self) -> list[InputParam]:
        merged = sequential_inputs(self.sub_blocks.values(), first=self.loop_inputs)
        if not _filling.get():
            return merged
        own = {p.name for p in self.loop_inputs}
        return [p if p.name in own or not p.required else p.replace(required=False) for p in merged]

    @property
    def expected_components(self) -> list[ComponentSpec]:
        return union_by_name([self.loop_expected_components, *(b.expected_components for b in self.sub_blocks.values())])

    @property
    def expected_configs(self) -> list[ConfigSpec]:
        return union_by_name([self.loop_expected_configs, *(b.expected_configs for b in self.sub_blocks.values())])

    @property
    def intermediate_outputs(self) -> list[OutputParam]:
        return union_by_name([self.loop_intermediate_outputs, *(b.intermediate_outputs for b in self.sub_blocks.values())])

    def get_block_state(self, state) -> BlockState:
        """The shared block state: the loop's and its sub-blocks' inputs, defaults applied, types checked.

        Raises:
            MissingInputError: a required ``loop_inputs`` value is absent (sub-blocks' are checked as they run).
            InputTypeError: a value does not match its concrete ``type_hint``.
        """
        for param in self.loop_inputs:
            if param.required and param.name is not None and state.values.get(param.name) is None:
                raise MissingInputError.required(param.name, current_path(), type(self).__name__, param.description)
        token = _filling.set(True)
        try:
            return super().get_block_state(state)
        finally:
            _filling.reset(token)

    def loop_step(self, components: Any, block_state: BlockState, **kwargs: Any):
        """Run every sub-block once on ``block_state`` (keyword arguments such as ``i``, ``t`` go to each).

        Raises:
            LoopInputMissingError: a sub-block's required input is not on the block state when it is to run.
            BlockExecutionError: a sub-block failed (naming it by its dotted path).
        """
        for name, block in self.sub_blocks.items():
            _check_required(block, block_state, name)
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


def _check_required(block, block_state: BlockState, name: str) -> None:
    values = block_state.__dict__
    for param in block.inputs:
        if param.required and param.name is not None and values.get(param.name) is None:
            raise LoopInputMissingError.not_set(param.name, child_path(name), type(block).__name__, param.description)
