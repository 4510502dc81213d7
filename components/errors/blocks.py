"""Errors of block declarations and graphs, and of inputs and outputs while blocks run."""

from __future__ import annotations

from typing import Iterable, Sequence

from ..formatting import format_value
from .base import DiffblocksError, _listing, _quoted_hints, _where


class BlockDeclarationError(DiffblocksError, TypeError):
    """A block class declares its params, sub-blocks or triggers inconsistently."""

    @classmethod
    def duplicate_names(cls, block_cls: str, kind: str, names: Sequence[str]) -> "BlockDeclarationError":
        return cls(f"{block_cls} declares {kind} more than once: {', '.join(sorted(set(names)))}")

    @classmethod
    def mismatched_lengths(cls, block_cls: str, **lengths: int) -> "BlockDeclarationError":
        parts = ", ".join(f"{k}={v}" for k, v in lengths.items())
        return cls(f"{block_cls}: block_classes, block_names and block_trigger_inputs must have one entry per block; got {parts}")

    @classmethod
    def bad_triggers(cls, block_cls: str, branches: int, triggers: Sequence[str | None]) -> "BlockDeclarationError":
        return cls(f"{block_cls}: needs one trigger input per branch ({branches}), with at most one None (the "
                   f"default branch); got {list(triggers)}")

    @classmethod
    def bad_choices(cls, block_cls: str, choices: object) -> "BlockDeclarationError":
        return cls(f"{block_cls}: choices must map each branch name to a (block, trigger input or None) pair, "
                   f"got {format_value(choices)}")

    @classmethod
    def not_a_block(cls, owner: str, name: str, value: object) -> "BlockDeclarationError":
        return cls(
            f"{owner}: sub-block '{name}' must be a ModularPipelineBlocks class or instance, got {format_value(value)}"
        )


class PipelineValidationError(DiffblocksError, ValueError):
    """Every problem found in a block tree, raised together."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        head = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        super().__init__(f"{head}:\n" + "\n".join(f"  - {p}" for p in self.problems))


def _about(error: DiffblocksError, name: str) -> DiffblocksError:
    """``error`` with ``input_name`` set: the input it is about, for callers that point at it (a node UI)."""
    error.input_name = name
    return error


class MissingInputError(DiffblocksError, ValueError):
    @classmethod
    def either(cls, owner: str, first: str, second: str, what: str) -> "MissingInputError":
        """``owner`` needs ``first`` or ``second`` and got neither; ``what`` says what each gives. About ``first``."""
        return _about(cls(f"{owner} needs '{first}' or '{second}', and neither was given: {what}"), first)

    @classmethod
    def needed(cls, owner: str, name: str, why: str) -> "MissingInputError":
        """``owner`` (what is loaded) needs input ``name``, which other sources go without: ``why``."""
        return _about(cls(f"{owner} needs '{name}': {why}"), name)

    @classmethod
    def required(cls, name: str, path: str | None, block_cls: str, description: str = "") -> "MissingInputError":
        desc = f" ({description})" if description else ""
        return _about(cls(f"{_where(path, block_cls)} needs the required input '{name}'{desc}, but it was not given"), name)

    @classmethod
    def one_of(cls, names: Sequence[str], path: str | None, block_cls: str) -> "MissingInputError":
        """None of ``names`` was given, and the block needs one of them (``prompt`` or ``prompt_embeds``)."""
        listed = " or ".join(f"'{n}'" for n in names)
        return cls(f"{_where(path, block_cls)} needs {listed}, but none of them was given")


class InputTypeError(DiffblocksError, TypeError):
    @classmethod
    def wrong_type(cls, name: str, path: str | None, block_cls: str, expected: str, value: object) -> "InputTypeError":
        return _about(cls(f"{_where(path, block_cls)}: input '{name}' expects {expected}, got {format_value(value)}"), name)


class UnknownInputError(DiffblocksError, TypeError):
    @classmethod
    def unknown(cls, names: Sequence[str], valid: Iterable[str]) -> "UnknownInputError":
        valid = list(valid)
        return cls(f"unknown input {_quoted_hints(names, valid)}; this pipeline takes: {_listing(valid, limit=60)}")


class BlockExecutionError(DiffblocksError, RuntimeError):
    """An exception inside a block's ``__call__``, re-raised once with where it happened."""

    def __init__(self, message: str, path: str | None = None, block_cls: str | None = None):
        super().__init__(message)
        self.path = path
        self.block_cls = block_cls

    @classmethod
    def not_ready(cls, path: str, block_cls: str, cause: BaseException) -> "BlockExecutionError":
        """``check_ready`` of a block that would run refused, before any block ran."""
        return cls(f"{_where(path, block_cls)} cannot run: {type(cause).__name__}: {cause}", path=path,
                   block_cls=block_cls)

    @classmethod
    def failed(cls, path: str, block_cls: str, inputs: dict, cause: BaseException) -> "BlockExecutionError":
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in inputs.items()) or "no inputs"
        return cls(
            f"{_where(path, block_cls)} failed: {type(cause).__name__}: {cause}\n  inputs: {shown}",
            path=path,
            block_cls=block_cls,
        )


class OutputNotSetError(DiffblocksError, RuntimeError):
    @classmethod
    def missing(cls, name: str, path: str | None, block_cls: str) -> "OutputNotSetError":
        return cls(
            f"{_where(path, block_cls)} declares the output '{name}' but did not set it on its block state; "
            f"set block_state.{name} (None is fine) or remove it from intermediate_outputs"
        )


class OutputNotFoundError(DiffblocksError, KeyError):
    @classmethod
    def missing(cls, names: Sequence[str], available: Iterable[str]) -> "OutputNotFoundError":
        available = list(available)
        return cls(f"the pipeline state has no value {_quoted_hints(names, available)}; it holds: {_listing(available, limit=60)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InputValueError(InputTypeError, ValueError):
    """An input of an accepted type whose value cannot work: outside its declared range, not finite, of the
    wrong shape, or at odds with another input. A ValueError, and an InputTypeError so that every handler
    of located input errors passes it through unchanged."""

    @classmethod
    def invalid(cls, name: str, path: str | None, block_cls: str, problem: str, value: object) -> "InputValueError":
        """``problem`` says what the value must be ("must be > 0", "must be finite (it holds 3 NaN)")."""
        return _about(cls(f"{_where(path, block_cls)}: input '{name}' {problem}, got {format_value(value)}"), name.split("[")[0])

    @classmethod
    def conflict(cls, names: Sequence[str], path: str | None, block_cls: str, problem: str) -> "InputValueError":
        """Several inputs that each pass but do not fit together; ``problem`` gives their values and the rule."""
        listed = ", ".join(f"'{n}'" for n in names[:-1]) + f" and '{names[-1]}'" if len(names) > 1 else f"'{names[0]}'"
        return _about(cls(f"{_where(path, block_cls)}: inputs {listed} do not fit together: {problem}"), names[0])

    @classmethod
    def unknown_names(cls, name: str, path: str | None, block_cls: str, unknown: Sequence[str],
                      available: Iterable[str]) -> "InputValueError":
        """Input ``name`` lists names (of values) the block does not hold; ``available`` are the ones it does."""
        available = list(available)
        return cls(f"{_where(path, block_cls)}: input '{name}' names {_quoted_hints(unknown, available)}, not a value the block "
                   f"holds; it holds: {_listing(available, limit=40)}")


class LoopInputMissingError(MissingInputError):
    """A loop sub-block's required input is absent from the loop's shared block state when the sub-block runs."""

    @classmethod
    def not_set(cls, name: str, path: str | None, block_cls: str, description: str = "") -> "LoopInputMissingError":
        desc = f" ({description})" if description else ""
        return cls(f"{_where(path, block_cls)} needs the required input '{name}'{desc}, but it was not given and "
                   "no earlier sub-block of the loop set it on the block state")


class DuplicateKeyError(DiffblocksError, KeyError):
    """``InsertableDict.insert`` was given a key the dict already holds."""

    @classmethod
    def already_present(cls, key: object, position: int) -> "DuplicateKeyError":
        return cls(f"'{key}' is already present at position {position}; assign to replace it, or pop it first")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
