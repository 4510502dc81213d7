"""The base of every diffblocks error, the helpers that word messages, and command-line usage errors."""

from __future__ import annotations

import difflib
from typing import Iterable

from ..formatting import format_value


def _where(path: str | None, cls_name: str | None) -> str:
    if path and cls_name:
        return f"block '{path}' ({cls_name})"
    if path:
        return f"block '{path}'"
    return f"block {cls_name}" if cls_name else "pipeline"


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for the candidate closest to ``name``, or ``""``."""
    match = closest(name, candidates)
    return f" (did you mean {match}?)" if match else ""


def _quoted_hints(names: Iterable[str], candidates: Iterable[str]) -> str:
    """``'a' (did you mean b?), 'c'``: each name quoted, with its closest candidate."""
    candidates = list(candidates)
    return ", ".join(f"'{name}'" + _did_you_mean(name, candidates) for name in names)


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class DiffblocksError(Exception):
    """Base class of every diffblocks error."""


class UsageError(DiffblocksError, ValueError):
    """A command-line argument that cannot work (the CLI prints it as one line)."""


class FlagError(UsageError):
    """A ``diffblocks`` command-line flag whose value cannot work; the message starts with the flag."""

    @classmethod
    def bad_value(cls, flag: str, expected: str, value: object) -> "FlagError":
        return cls(f"{flag} must be {expected}, got {format_value(value)}")

    @classmethod
    def needs(cls, flag: str, other: str, why: str = "") -> "FlagError":
        return cls(f"{flag} needs {other}" + (f": {why}" if why else ""))

    @classmethod
    def unsupported(cls, flag: str, preset: str, supported: Iterable[str]) -> "FlagError":
        return cls(f"{flag} works with the {', '.join(supported)} workflows, not preset '{preset}'")

    @classmethod
    def preset_unavailable(cls, preset: str, module: str, cause: BaseException) -> "FlagError":
        return cls(f"preset '{preset}' needs {module}, which cannot be imported: {cause}")

    @classmethod
    def unknown_choice(cls, what: str, value: str, choices: Iterable[str], flag: str | None = None) -> "FlagError":
        choices = list(choices)
        hint = _did_you_mean(value, choices)
        return cls(f"{flag + ': ' if flag else ''}unknown {what} '{value}'{hint}; {what}s: {', '.join(choices)}")

    @classmethod
    def not_an_input(cls, flag: str, preset: str, hint: str = "") -> "FlagError":
        return cls(f"preset '{preset}' takes no {flag}" + (f"; {hint}" if hint else ""))

    @classmethod
    def unusable(cls, flag: str, value: str, problem: str) -> "FlagError":
        """``problem`` says what is wrong with the file, folder, repo or device ``value`` names."""
        return cls(f"{flag} {value}: {problem}")

    @classmethod
    def failed(cls, flag: str, value: str, cause: BaseException) -> "FlagError":
        """Loading what ``flag`` names raised ``cause``; its first line is kept."""
        text = str(cause).strip()
        return cls.unusable(flag, value, text.splitlines()[0] if text else type(cause).__name__)
