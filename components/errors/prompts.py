"""Errors of prompt weighting syntax: brackets that do not balance, weights that are not numbers."""

from __future__ import annotations

from .base import _where
from .blocks import InputValueError, _about

_CONTEXT = 12  # characters shown on each side of the position


def _near(prompt: str, position: int) -> str:
    start, end = max(0, position - _CONTEXT), min(len(prompt), position + _CONTEXT + 1)
    return ("..." if start else "") + prompt[start:end] + ("..." if end < len(prompt) else "")


class PromptSyntaxError(InputValueError):
    """A prompt whose weighting syntax (``(word:1.3)``, ``[word]``, ``word++``) cannot be read.

    ``position`` is the 0-based index of the offending character in the prompt.
    """

    position: int | None = None

    @classmethod
    def unbalanced(cls, prompt: str, position: int, problem: str) -> "PromptSyntaxError":
        """The bracket at ``position`` ``problem`` ("closes no bracket", "is never closed", ...)."""
        error = cls(f"prompt syntax: {prompt[position]!r} at position {position} {problem} "
                    f"(near {_near(prompt, position)!r}); "
                    "balance the brackets, or escape a literal one as \\( \\) \\[ \\]")
        error.position = position
        return error

    @classmethod
    def bad_weight(cls, prompt: str, position: int, text: str) -> "PromptSyntaxError":
        """``(word:<text>)`` where ``text`` is not a number."""
        error = cls(f"prompt syntax: weight {text!r} at position {position} (near {_near(prompt, position)!r}) is "
                    "not a number; write it as (word:1.3)")
        error.position = position
        return error

    @classmethod
    def in_input(cls, name: str, path: str | None, block_cls: str, cause: "PromptSyntaxError") -> "PromptSyntaxError":
        """``cause`` located: the block reading the prompt, and the input it came from."""
        error = cls(f"{_where(path, block_cls)}: input '{name}': {cause}")
        error.position = cause.position
        return _about(error, name)
