"""AutoPipelineBlocks: pick one branch by which trigger inputs are given.

``block_trigger_inputs`` has one entry per branch; ``None`` marks the default. The first branch whose
trigger input is provided (not None) runs; otherwise the default; with no default the block is skipped.

A subclass declares its branches once, as ``choices = {name: (block, trigger)}``, in the order they are
tried; ``block_classes``, ``block_names`` and ``block_trigger_inputs`` are made from it::

    class AutoDenoiseStep(AutoPipelineBlocks):
        choices = {"inpaint": (InpaintDenoiseStep, "mask_image"), "denoise": (DenoiseStep, None)}
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .block import ModularPipelineBlocks, child_path, run_block, run_loop_block
from .composite import CompositeBlocks, auto_inputs
from ..components.errors import BlockDeclarationError
from .params import InputParam
from .state import BlockState


class AutoPipelineBlocks(CompositeBlocks):
    """Chooses one sub-block to run from the inputs given (e.g. inpaint / img2img / text2img)."""

    block_trigger_inputs: list[str | None] = []
    choices: Mapping[str, tuple[Any, str | None]] | None = None

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        choices = cls.__dict__.get("choices")
        if choices is None:
            return
        if any(not isinstance(pair, tuple) or len(pair) != 2 for pair in choices.values()):
            raise BlockDeclarationError.bad_choices(cls.__name__, choices)
        cls.block_names = list(choices)
        cls.block_classes = [block for block, _ in choices.values()]
        cls.block_trigger_inputs = [trigger for _, trigger in choices.values()]

    def __init__(self):
        self.triggers = list(self.block_trigger_inputs)
        super().__init__()

    def _check_lengths(self) -> None:
        super()._check_lengths()
        if len(self.block_trigger_inputs) != len(self.block_names):
            raise BlockDeclarationError.mismatched_lengths(
                type(self).__name__, block_classes=len(self.block_classes), block_names=len(self.block_names),
                block_trigger_inputs=len(self.block_trigger_inputs),
            )
        if list(self.block_trigger_inputs).count(None) > 1:
            raise BlockDeclarationError.bad_triggers(type(self).__name__, len(self.block_names),
                                                     self.block_trigger_inputs)

    @classmethod
    def from_blocks_dict(cls, blocks_dict: Mapping[str, Any] | Iterable[tuple[str, Any]],
                         trigger_inputs: list[str | None] | None = None, description: str | None = None):
        """An Auto block from ``{name: block}`` and one trigger per branch (default: the class's)."""
        instance = super().from_blocks_dict(blocks_dict, description=description)
        triggers = list(trigger_inputs if trigger_inputs is not None else cls.block_trigger_inputs)
        if len(triggers) != len(instance.sub_blocks) or triggers.count(None) > 1:
            raise BlockDeclarationError.bad_triggers(cls.__name__, len(instance.sub_blocks), triggers)
        instance.triggers = triggers
        return instance

    @property
    def trigger_map(self) -> dict[str, str | None]:
        """Branch name to its trigger input (None: the default branch)."""
        return dict(zip(self.sub_blocks, self.triggers))

    @property
    def inputs(self) -> list[InputParam]:
        return auto_inputs(list(self.sub_blocks.values()), self.triggers)

    def select(self, provided) -> tuple[str, ModularPipelineBlocks] | None:
        """The branch that runs when ``provided`` (a set of names, or a mapping of values) is given."""
        is_given = (lambda n: provided.get(n) is not None) if isinstance(provided, Mapping) else provided.__contains__
        default = None
        for (name, block), trigger in zip(self.sub_blocks.items(), self.triggers):
            if trigger is None:
                default = (name, block)
            elif is_given(trigger):
                return name, block
        return default

    def __call__(self, components, state, **loop_kwargs):
        if isinstance(state, BlockState):  # used inside a loop
            chosen = self.select(state.__dict__)
            if chosen is None:
                return components, state
            name, block = chosen
            return run_loop_block(block, components, state, child_path(name), **loop_kwargs)
        chosen = self.select(state.values)
        if chosen is not None:
            run_block(chosen[1], components, state, child_path(chosen[0]))
        return components, state

    def _execution_blocks(self, provided: set[str]):
        chosen = self.select(provided)
        return None if chosen is None else chosen[1]._execution_blocks(provided)
