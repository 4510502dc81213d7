"""LoopSequentialPipelineBlocks: a wrapper that runs its sub-blocks once per iteration.

The wrapper declares ``loop_inputs`` (``loop_intermediate_inputs``, the design document's name for inputs
an earlier block produces, are read the same way and join them), ``loop_expected_components``,
``loop_intermediate_outputs`` (and ``loop_expected_configs``). Loop sub-blocks work on the wrapper's
BlockState directly: ``__call__(self, components, block_state, **kw) -> (components, block_state)``.

The loop driver: a wrapper that does not write its own ``__call__`` gets the one here, which runs
``self.loop_step(components, block_state, i=i, t=t)`` once per item of ``loop_items`` (the timesteps) with
a progress bar, stops when the call is interrupted (checked before each step), and after each step calls
``callback_on_step_end`` and ``step_callback`` (see :meth:`LoopSequentialPipelineBlocks.__call__`). Its hooks
``before_loop`` and ``before_step`` are where a family puts its own per-call and per-step work (the Stable
Diffusion wrapper resets its guider and tells it the step). Such a wrapper takes the callbacks as inputs
without declaring them (``DRIVER_INPUTS`` join its ``loop_inputs``); a wrapper that writes its own ``__call__``
drives the loop itself with ``loop_step`` and takes only what it declares.

Required inputs: the wrapper's own ``loop_inputs`` must be in the pipeline state when it starts. A
sub-block's required input is checked just before that sub-block runs, against the shared block state:
an earlier sub-block may set it there without declaring it as an output (the design document's
Differential Diffusion ``before_denoiser`` sets ``scaled_latents`` so), which cannot be known beforehand.
The aggregated ``inputs`` still say what the declarations say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Iterable

from ..components.spec import ComponentSpec, ConfigSpec
from .block import child_path, current_path, run_loop_block
from .composite import CompositeBlocks, sequential_inputs, union_by_name
from ..components.errors import InputValueError, LoopInputMissingError, MissingInputError
from .params import InputParam, OutputParam
from .state import BlockState

# set while a loop wrapper fills its block state: sub-block inputs are then not demanded (see module doc)
_filling: ContextVar[bool] = ContextVar("diffblocks_loop_filling", default=False)

STEP_CALLBACK = InputParam(
    "step_callback", type_hint=Callable,
    description="fn(step, timestep, latents) after each step; return False to stop")
CALLBACK_ON_STEP_END = InputParam(
    "callback_on_step_end", type_hint=Callable,
    description="fn(pipe, step_index, timestep, callback_kwargs) -> dict after each step, as in diffusers: "
                "callback_kwargs holds the values named by callback_on_step_end_tensor_inputs, the returned "
                "dict's values replace them; pipe is the components object the blocks get")
CALLBACK_TENSOR_INPUTS = InputParam(
    "callback_on_step_end_tensor_inputs", type_hint=list[str],
    description="names of the loop's values passed to callback_on_step_end (default: ['latents'])")
DRIVER_INPUTS = [STEP_CALLBACK, CALLBACK_ON_STEP_END, CALLBACK_TENSOR_INPUTS]
"""The inputs of the loop driver: they join the ``loop_inputs`` of every wrapper that uses it."""


class _LoopInputs:
    """``loop_inputs`` as a class wrote it (a list or a property), joined by its ``loop_intermediate_inputs``
    and, when the class runs the core loop driver, by ``DRIVER_INPUTS``."""

    def __init__(self, declared: Any):
        self.declared = declared

    def __get__(self, obj: Any, owner: type) -> Any:
        declared = self.declared.__get__(obj, owner) if hasattr(self.declared, "__get__") else self.declared
        if isinstance(declared, property):  # a property read on the class: as Python gives it
            return declared
        extra = getattr(obj if obj is not None else owner, "loop_intermediate_inputs", None)
        extra = list(extra) if isinstance(extra, (list, tuple)) else []
        if owner.__call__ is LoopSequentialPipelineBlocks.__call__:  # the driver's callbacks
            extra += DRIVER_INPUTS
        if not extra:
            return declared
        names = {p.name for p in declared}
        return [*declared, *(p for p in extra if p.name not in names)]


class LoopSequentialPipelineBlocks(CompositeBlocks):
    """A loop over sub-blocks that share one BlockState (e.g. the denoise loop).

    ``latents_name`` names the block-state value the callbacks see as the latents (``step_callback``'s third
    argument, ``callback_on_step_end_tensor_inputs``' default).
    """

    latents_name = "latents"

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
            components, block_state = run_loop_block(block, components, block_state, child_path(name), **kwargs)
        return components, block_state

    # --- the loop driver --------------------------------------------------------------------------
    def __call__(self, components, state):
        """Run the sub-blocks once per item of :meth:`loop_items`, without autograd.

        Per call: ``callback_on_step_end_tensor_inputs`` is checked, then :meth:`before_loop`. Per step ``i``
        over timestep ``t``: stop if the call was interrupted (``interrupt_event``, ``pipe.interrupt()``),
        :meth:`before_step`, ``loop_step(components, block_state, i=i, t=t)``, the progress bar, then
        ``callback_on_step_end(pipe, i, t, callback_kwargs)`` and ``step_callback(i, t, latents)``.

        ``callback_on_step_end`` has diffusers' signature: ``callback_kwargs`` maps each name of
        ``callback_on_step_end_tensor_inputs`` (default ``[latents_name]``) to that block-state value; the
        values of the dict it returns (None: no change) replace those values, so ``{"latents": ...}`` changes
        the latents the next step starts from. ``pipe`` is the ``components`` object the blocks get: attribute
        access to the pipeline's components and config values (``pipe.scheduler``, ``pipe.guider``). To stop
        early, set the ``interrupt_event`` given to the call; ``step_callback`` may return False instead.

        Raises:
            InputValueError: ``callback_on_step_end_tensor_inputs`` names a value the loop does not hold, or
                ``callback_on_step_end`` returned another name.
        """
        import torch  # the core imports torch only where a loop runs

        with torch.no_grad():
            block_state = self.get_block_state(state)
            tensor_inputs = self._tensor_inputs(block_state)
            self.before_loop(components, block_state)
            items = list(self.loop_items(components, block_state))
            with components.progress_bar(total=len(items)) as bar:
                for i, t in enumerate(items):
                    if components.interrupted:
                        break
                    self.before_step(components, block_state, i, t)
                    components, block_state = self.loop_step(components, block_state, i=i, t=t)
                    bar.update()
                    if not self._after_step(components, block_state, i, t, tensor_inputs):
                        break
            self.set_block_state(state, block_state)
        return components, state

    def loop_items(self, components, block_state) -> Iterable:
        """What the driver iterates over, each item given to the sub-blocks as ``t``: the timesteps."""
        return block_state.timesteps

    def before_loop(self, components, block_state) -> None:
        """Hook: once per call, before the first step (e.g. reset per-call state, check inputs)."""

    def before_step(self, components, block_state, i: int, t: Any) -> None:
        """Hook: before step ``i`` (at ``t``), after the interrupt check."""

    def _tensor_inputs(self, block_state) -> list[str]:
        """The names ``callback_on_step_end`` gets, checked when it is given or they are."""
        names = block_state.callback_on_step_end_tensor_inputs
        if names is None:
            if block_state.callback_on_step_end is None:
                return [self.latents_name]
            names = [self.latents_name]
        own = {p.name for p in DRIVER_INPUTS}
        available = (set(block_state.__dict__) | set(self.intermediate_output_names)) - own
        unknown = [name for name in names if name not in available]
        if unknown:
            raise InputValueError.unknown_names(CALLBACK_TENSOR_INPUTS.name, current_path(), type(self).__name__,
                                                unknown, available)
        return list(names)

    def _after_step(self, components, block_state, i: int, t: Any, tensor_inputs: list[str]) -> bool:
        """The callbacks after step ``i``; False when ``step_callback`` asks to stop."""
        callback = block_state.callback_on_step_end
        if callback is not None:
            returned = callback(components, i, t, {name: getattr(block_state, name, None) for name in tensor_inputs})
            for name, value in _returned_values(self, returned, tensor_inputs).items():
                setattr(block_state, name, value)
        step_callback = block_state.step_callback
        return step_callback is None or step_callback(i, t, getattr(block_state, self.latents_name, None)) is not False


def _returned_values(loop, returned: Any, tensor_inputs: list[str]) -> Mapping:
    """What ``callback_on_step_end`` returned, refused unless it is None or a dict of ``tensor_inputs`` names."""
    if returned is None:
        return {}
    if not isinstance(returned, Mapping) or any(name not in tensor_inputs for name in returned):
        problem = (f"must return None or a dict whose keys are among callback_on_step_end_tensor_inputs "
                   f"({', '.join(tensor_inputs)})")
        shown = list(returned) if isinstance(returned, Mapping) else returned
        raise InputValueError.invalid(CALLBACK_ON_STEP_END.name, current_path(), type(loop).__name__, problem, shown)
    return returned


def _check_required(block, block_state: BlockState, name: str) -> None:
    values = block_state.__dict__
    for param in block.inputs:
        if param.required and param.name is not None and values.get(param.name) is None:
            raise LoopInputMissingError.not_set(param.name, child_path(name), type(block).__name__, param.description)
