"""ModularPipelineBlocks: the unit of a pipeline, and how one block is run.

A block declares ``expected_components``, ``expected_configs``, ``inputs`` and ``intermediate_outputs``
and computes in ``__call__(components, state)``: it takes a local :class:`BlockState` with
``get_block_state``, computes, and writes back with ``set_block_state``.

The dotted path of the block being run (``denoise.denoiser``) is kept in a context variable, so every
error raised while it runs can say where it happened without blocks passing paths around.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..components.spec import ComponentSpec, ConfigSpec
from .checks import check_declaration, check_input_type
from ..components.errors import (
    BlockDeclarationError,
    BlockExecutionError,
    InputTypeError,
    MissingInputError,
    OutputNotSetError,
)
from .insertable import InsertableDict
from .params import InputParam, OutputParam
from .state import BlockState, PipelineState

_current_path: ContextVar[str] = ContextVar("diffblocks_block_path", default="")

# errors that already say which block they come from: passed through unchanged by outer blocks
LOCATED_ERRORS = (BlockExecutionError, MissingInputError, InputTypeError, OutputNotSetError)


def current_path() -> str:
    """The dotted path of the block being run ('' at the top)."""
    return _current_path.get()


def child_path(name: str) -> str:
    base = _current_path.get()
    return f"{base}.{name}" if base else name


def brief_inputs(block: "ModularPipelineBlocks", values: dict) -> dict:
    return {n: values.get(n) for n in block.input_names if n in values}


def run_block(block: "ModularPipelineBlocks", components: Any, state: PipelineState, path: str) -> None:
    """Run ``block`` on ``state`` as the block at ``path``; an exception becomes one located error."""
    token = _current_path.set(path)
    try:
        block(components, state)
    except LOCATED_ERRORS:
        raise
    except Exception as err:
        raise BlockExecutionError.failed(path, type(block).__name__, brief_inputs(block, state.values), err) from err
    finally:
        _current_path.reset(token)


def run_loop_block(block: "ModularPipelineBlocks", components: Any, block_state: BlockState, path: str,
                   **loop_kwargs: Any) -> tuple[Any, BlockState]:
    """Run ``block`` inside a loop step, on the loop's ``block_state``, as the block at ``path``: what it
    returns; an exception becomes one located error."""
    token = _current_path.set(path)
    try:
        return block(components, block_state, **loop_kwargs)
    except LOCATED_ERRORS:
        raise
    except Exception as err:
        raise BlockExecutionError.failed(path, type(block).__name__, brief_inputs(block, block_state.__dict__),
                                         err) from err
    finally:
        _current_path.reset(token)


class BlockDict(InsertableDict):
    """``sub_blocks``: names to block instances (classes are instantiated on assignment)."""

    def __init__(self, owner: str, items=()):
        self.owner = owner
        super().__init__(items)

    def _check(self, key: Any, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, ModularPipelineBlocks):
            return value()
        if not isinstance(value, ModularPipelineBlocks):
            raise BlockDeclarationError.not_a_block(self.owner, key, value)
        return value

    def copy(self) -> "BlockDict":
        return BlockDict(self.owner, self.items())


_CHECKED: set[type] = set()


class ModularPipelineBlocks:
    """The base of every block. Subclass it, declare params, and implement ``__call__``."""

    model_name: str | None = None
    expected_components: list[ComponentSpec] = []
    expected_configs: list[ConfigSpec] = []
    inputs: list[InputParam] = []
    intermediate_outputs: list[OutputParam] = []
    description: str = ""
    _strict_outputs = True  # a leaf must set every declared output

    def __init__(self):
        cls = type(self)
        if cls not in _CHECKED:
            self._check_declaration()
            _CHECKED.add(cls)

    def _check_declaration(self) -> None:
        check_declaration(type(self).__name__, list(self.inputs), list(self.intermediate_outputs))

    # --- structure -------------------------------------------------------------------------------
    @property
    def sub_blocks(self) -> BlockDict:
        blocks = self.__dict__.get("_sub_blocks")
        if blocks is None:
            blocks = self.__dict__["_sub_blocks"] = BlockDict(type(self).__name__)
        return blocks

    @sub_blocks.setter
    def sub_blocks(self, value) -> None:
        self.__dict__["_sub_blocks"] = BlockDict(type(self).__name__, value.items())

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.inputs if p.name is not None]

    @property
    def required_input_names(self) -> list[str]:
        return [p.name for p in self.inputs if p.required and p.name is not None]

    @property
    def intermediate_output_names(self) -> list[str]:
        return [p.name for p in self.intermediate_outputs]

    @property
    def component_names(self) -> list[str]:
        return [c.name for c in self.expected_components]

    def check_ready(self, components, values: dict[str, Any]) -> None:
        """Raise, before any block of the call runs, when this block could not run with ``components`` and the
        call's ``values`` (an adapter's image given with no adapter loaded); the default checks nothing."""

    def get_execution_blocks(self, *trigger_inputs: str, **inputs: Any) -> "ModularPipelineBlocks":
        """The blocks that would run given these inputs (a leaf always runs)."""
        provided = set(trigger_inputs) | {k for k, v in inputs.items() if v is not None}
        return self._execution_blocks(provided)

    def _execution_blocks(self, provided: set[str]) -> "ModularPipelineBlocks | None":
        return self

    # --- running ---------------------------------------------------------------------------------
    def __call__(self, components: Any, state: PipelineState) -> tuple[Any, PipelineState]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(self, components, state)")

    def get_block_state(self, state: PipelineState) -> BlockState:
        """This block's local view of ``state``: its declared inputs, defaults applied, types checked.

        Raises:
            MissingInputError: a required input is absent (or None).
            InputTypeError: an input does not match its concrete ``type_hint``.
        """
        values = state.values
        data: dict[str, Any] = {}
        for param in self.inputs:
            name = param.name
            if name is None:
                group = state.get_by_kwargs(param.kwargs_type)
                data.update(group)
                data[param.kwargs_type] = group
                continue
            value = values.get(name)
            if value is None:
                if param.required:
                    raise MissingInputError.required(name, current_path(), type(self).__name__, param.description)
                value = param.default_value
            elif param.type_hint is not None:
                check_input_type(param, value, current_path(), type(self).__name__)
            data[name] = value
        return BlockState(**data)

    def set_block_state(self, state: PipelineState, block_state: BlockState) -> None:
        """Write the declared outputs, and inputs the block replaced, back to ``state``."""
        local = block_state.__dict__
        for param in self.intermediate_outputs:
            name = param.name
            if name in local:
                state.set(name, local[name], param.kwargs_type)
            elif self._strict_outputs:
                raise OutputNotSetError.missing(name, current_path(), type(self).__name__)
        values = state.values
        for param in self.inputs:
            name = param.name
            if name is not None and name in local and local[name] is not values.get(name):
                state.set(name, local[name], param.kwargs_type)

    # --- pipelines, graphs and docs ----------------------------------------------------------------
    def init_pipeline(self, pretrained_model_name_or_path=None, components_manager=None, collection=None):
        """A :class:`ModularPipeline` running these blocks (specs read from the repo, if given)."""
        from .pipeline import ModularPipeline

        return ModularPipeline(self, pretrained_model_name_or_path, components_manager=components_manager,
                               collection=collection)

    def graph(self):
        """The data-flow graph (networkx DiGraph) of this block tree; see :mod:`.graph`."""
        from .graph import build_graph

        return build_graph(self)

    def validate(self, inputs=None) -> None:
        """Raise :class:`PipelineValidationError` listing every problem in this block tree, if any."""
        from .graph import validate

        validate(self, inputs=inputs)

    def input_schema(self) -> dict:
        """The inputs as a JSON schema (types, defaults, descriptions, required), e.g. for a node UI."""
        from .schema import input_schema

        return input_schema(self)

    def to_mermaid(self) -> str:
        from .graph import to_mermaid

        return to_mermaid(self.graph())

    @property
    def doc(self) -> str:
        from .render import render_doc

        return render_doc(self)

    def __repr__(self) -> str:
        from .render import render_block

        return render_block(self)
