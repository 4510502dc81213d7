"""What Sequential, Loop and Auto blocks share: building ``sub_blocks`` and merging declarations.

Aggregation rules (tested in tests/modular_pipelines/test_aggregation.py):

- Sequential (and a loop's body): the inputs are the sub-blocks' inputs, in order, minus every name an
  *earlier* sub-block outputs, so a value produced inside is never a pipeline input; the first
  declaration of a name is the one shown. Outputs, components and configs are the union, first declaration wins.
- Auto: the inputs are the union of the branches' inputs plus the trigger names.

Which declaration of a name applies depends on the trigger inputs given: the first block that reads the name
on the way the tree runs applies its default (and writes it back for later readers) or demands it. An
aggregated input therefore keeps its per-workflow declarations (:class:`Variant`, in ``metadata["variants"]``)
when they depend on triggers, and says ``required`` only when every workflow demands it (an Auto block
without a default branch may be skipped, so nothing in it is required) and shows a default only when every
workflow that reads it has the same one.

Properties build new lists each time and never mutate a param object.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any, Iterable, Mapping, NamedTuple

from ..components.spec import ComponentSpec, ConfigSpec
from .block import BlockDict, ModularPipelineBlocks
from .checks import check_block_names
from .params import NO_DEFAULT, InputParam, OutputParam

VARIANTS = "variants"

Condition = tuple[tuple[str, bool], ...]  # (trigger name, given?) pairs, all of which hold


class Variant(NamedTuple):
    """One declaration of an aggregated input and when it applies (``when``: trigger literals, all must hold)."""

    when: Condition
    required: bool
    default: Any


def variants(param: InputParam) -> tuple[Variant, ...]:
    """The per-workflow declarations of an aggregated input, in the order they apply (first match wins)."""
    found = (param.metadata or {}).get(VARIANTS)
    return tuple(found) if found is not None else (Variant((), param.required, param.default),)


def _key(param: InputParam) -> str:
    return param.name if param.name is not None else f"**{param.kwargs_type}"


def _conjoin(outer: Condition, inner: Condition) -> Condition | None:
    """Both conditions at once, or None when they contradict each other."""
    merged = dict(outer)
    for name, given in inner:
        if merged.setdefault(name, given) != given:
            return None
    return tuple(sorted(merged.items()))


def _worlds(entries: list[Variant]):
    """Every combination of the triggers the entries mention, as ``{name: given}``."""
    names = sorted({name for entry in entries for name, _ in entry.when})
    for values in itertools.product((True, False), repeat=len(names)):
        yield dict(zip(names, values))


def _applying(entries: list[Variant], world: dict[str, bool]) -> Variant | None:
    return next((e for e in entries if all(world[n] == g for n, g in e.when)), None)


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or (type(a) is type(b) and bool(a == b))
    except Exception:  # values whose == is not a bool (tensors): only identical counts
        return False


def merge_variants(base: InputParam, entries: list[Variant]) -> InputParam:
    """``base`` (type, description) with ``required``/``default`` true of every workflow and, when they
    depend on triggers, the variants kept in its metadata."""
    kept: list[Variant] = []
    for entry in entries:
        if any(entry.when == k.when for k in kept):
            continue  # an earlier declaration applies there
        kept.append(entry)
        if not entry.when:
            break  # applies everywhere left: later ones never do
    meta = {k: v for k, v in (base.metadata or {}).items() if k != VARIANTS}
    applying = [_applying(kept, world) for world in _worlds(kept)]
    required = all(entry is not None and entry.required for entry in applying)
    defaults = [entry.default for entry in applying if entry is not None]
    same_default = all(_same(d, defaults[0]) for d in defaults)
    default = defaults[0] if not required and same_default else NO_DEFAULT
    if None not in applying and same_default and len({entry.required for entry in applying}) == 1:
        # every workflow reads it the same way: a plain param
        if base.required == required and _same(base.default, default) and VARIANTS not in (base.metadata or {}):
            return base
        return base.replace(required=required, default=default, metadata=meta or None)
    return base.replace(required=required, default=default, metadata={**meta, VARIANTS: tuple(kept)})


def sequential_inputs(blocks: Iterable[ModularPipelineBlocks], first: Iterable[InputParam] = ()) -> list[InputParam]:
    """Inputs of blocks run in order: ``first`` (e.g. a loop's own inputs), then each block's inputs
    not produced by an earlier block; the first declaration is shown, the first that applies decides."""
    found: dict[str, tuple[InputParam, list[Variant]]] = {}
    produced: set[str] = set()
    steps = itertools.chain([(list(first), ())], ((b.inputs, b.intermediate_output_names) for b in blocks))
    for params, outputs in steps:
        for param in params:
            if param.name is not None and param.name in produced:
                continue  # read from the block that made it, not from the user
            base, entries = found.setdefault(_key(param), (param, []))
            entries.extend(variants(param))
        produced.update(outputs)
    return [merge_variants(base, entries) for base, entries in found.values()]


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


def branch_conditions(triggers: list[str | None]) -> list[Condition | None]:
    """When each branch of an Auto block runs: its trigger given and no earlier one; the default when none is
    (None: never, as for a branch whose trigger an earlier branch has)."""
    named = [t for t in triggers if t is not None]
    conditions: list[Condition | None] = []
    for i, trigger in enumerate(triggers):
        earlier = [t for t in triggers[:i] if t is not None]
        if trigger is None:
            conditions.append(tuple(sorted((t, False) for t in set(named))))
        elif trigger in earlier:
            conditions.append(None)
        else:
            conditions.append(tuple(sorted({**{t: False for t in earlier}, trigger: True}.items())))
    return conditions


def auto_inputs(branches: list[ModularPipelineBlocks], triggers: Iterable[str | None]) -> list[InputParam]:
    """Union of the branches' inputs (each declaration kept as the variant of its branch); triggers added."""
    triggers = list(triggers)
    found: dict[str, tuple[InputParam, list[Variant]]] = {}
    for block, condition in zip(branches, branch_conditions(triggers)):
        for param in block.inputs if condition is not None else ():
            base, entries = found.setdefault(_key(param), (param, []))
            for entry in variants(param):
                when = _conjoin(condition, entry.when)
                if when is not None:
                    entries.append(entry._replace(when=when))
    merged = {key: merge_variants(base, entries) for key, (base, entries) in found.items()}
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
        from ..components.errors import BlockDeclarationError

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
