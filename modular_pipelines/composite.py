"""What Sequential, Loop and Auto blocks share: building ``sub_blocks`` and merging declarations.

Aggregation rules (tested in tests/modular_pipelines/test_aggregation.py):

- Sequential (and a loop's body): the inputs are the sub-blocks' inputs, in order, minus every name an
  *earlier* sub-block outputs, so a value produced inside is never a pipeline input; the first
  declaration of a name wins. Outputs, components and configs are the union, first declaration wins.
- Auto: the inputs are the union of the branches' inputs plus the trigger names; an input is required
  only when every branch requires it.

Properties build new lists each time and never mutate a param object.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping

from ..components.spec import ComponentSpec, ConfigSpec
from .block import BlockDict, ModularPipelineBlocks
from .checks import check_block_names
from .params import InputParam, OutputParam


def _key(param: InputParam) -> str:
    return param.name if param.name is not None else f"**{param.kwargs_type}"


def sequential_inputs(blocks: Iterable[ModularPipelineBlocks], first: Iterable[InputParam] = ()) -> list[InputParam]:
    """Inputs of blocks run in order: ``first`` (e.g. a loop's own inputs), then each block's inputs
    not produced by an earlier block; first declaration wins."""
    seen: set[str] = set()
    produced: set[str] = set()
    merged: list[InputParam] = []
    for param in first:
        seen.add(_key(param))
        merged.append(param)
    for block in blocks:
        for param in block.inputs:
            key = _key(param)
            if key in seen or (param.name is not None and param.name in produced):
                continue
            seen.add(key)
            merged.append(param)
        produced.update(block.intermediate_output_names)
    return merged


def union_by_name(groups: Iterable[Iterable[Any]]) -> list[Any]:
    """Outputs / ComponentSpecs / ConfigSpecs of several blocks, first declaration of a name wins."""
    seen: set[str] = set()
    merged = []
    for group in groups:
        for item in group:
            if item.name not in seen:
                seen.add(item.name)
                merged.append(item)
    return merged


def auto_inputs(branches: list[ModularPipelineBlocks], triggers: Iterable[str | None]) -> list[InputParam]:
    """Union of the branches' inputs; required only when every branch requires it; triggers added."""
    per_branch = [{_key(p): p for p in b.inputs} for b in branches]
    merged: dict[str, InputParam] = {}
    for params in per_branch:
        for key, param in params.items():
            if key in merged:
                continue
            everywhere = all(key in other and other[key].required for other in per_branch)
            merged[key] = param if param.required == everywhere else param.replace(required=everywhere)
    for trigger in triggers:
        if trigger is not None and trigger not in merged:
            merged[trigger] = InputParam(trigger, description=f"selects the branch triggered by '{trigger}'")
    return list(merged.values())


class CompositeBlocks(ModularPipelineBlocks):
    """A block made of named sub-blocks, from ``block_classes`` + ``block_names`` or ``from_blocks_dict``."""

    block_classes: list = []
    block_names: list[str] = []
    _strict_outputs = False

    def __init__(self):
        names = list(self.block_names)
        check_block_names(type(self).__name__, names)
        self._check_lengths()
        self.sub_blocks = BlockDict(type(self).__name__, zip(names, self.block_classes))
        super().__init__()

    def _check_lengths(self) -> None:
        from .errors import BlockDeclarationError

        if len(self.block_classes) != len(self.block_names):
            raise BlockDeclarationError.mismatched_lengths(
                type(self).__name__, block_classes=len(self.block_classes), block_names=len(self.block_names)
            )

    def _check_declaration(self) -> None:
        pass  # sub-blocks check themselves; names are checked in __init__

    @classmethod
    def from_blocks_dict(cls, blocks_dict: Mapping[str, Any] | Iterable[tuple[str, Any]], description: str | None = None):
        """An instance whose sub-blocks are ``blocks_dict`` (values: block classes or instances)."""
        pairs = list(blocks_dict.items()) if isinstance(blocks_dict, Mapping) else list(blocks_dict)
        check_block_names(cls.__name__, [name for name, _ in pairs])
        instance = cls.__new__(cls)
        instance.sub_blocks = BlockDict(cls.__name__, pairs)
        if description is not None:
            instance.__dict__["_description"] = description
        instance._after_from_dict()
        ModularPipelineBlocks.__init__(instance)
        return instance

    def _after_from_dict(self) -> None:
        """Hook for subclasses that derive state from their sub-blocks."""

    @property
    def description(self) -> str:
        own = self.__dict__.get("_description")
        if own is not None:
            return own
        cls = type(self)  # a user subclass's docstring describes it; our base classes' do not
        return inspect.cleandoc(cls.__doc__ or "") if not cls.__module__.startswith(__package__) else ""

    @property
    def expected_components(self) -> list[ComponentSpec]:
        return union_by_name(b.expected_components for b in self.sub_blocks.values())

    @property
    def expected_configs(self) -> list[ConfigSpec]:
        return union_by_name(b.expected_configs for b in self.sub_blocks.values())

    @property
    def intermediate_outputs(self) -> list[OutputParam]:
        return union_by_name(b.intermediate_outputs for b in self.sub_blocks.values())

    def walk(self, prefix: str = ""):
        """Yield ``(dotted_path, block)`` for every block below this one, depth first."""
        for name, block in self.sub_blocks.items():
            path = f"{prefix}.{name}" if prefix else name
            yield path, block
            if isinstance(block, CompositeBlocks):
                yield from block.walk(path)
