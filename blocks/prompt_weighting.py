r"""Prompt weighting syntax, and long prompts in chunks: pure functions, no torch.

The syntax is A1111's attention syntax plus compel's ``+``/``-`` suffixes:

==========================  ====================================================================
``(text)``                  weight x 1.1
``[text]``                  weight / 1.1
``(text:1.3)``              weight x 1.3 (any decimal number, also negative)
``word++``, ``word--``      x 1.1 per ``+``, x 0.9 per ``-`` (compel); on a group, ``(a b)++``, the
                            suffix replaces the group's own 1.1 (in compel brackets only group)
nesting                     multiplies: ``((a))`` is 1.21, ``[(a:1.5)]`` is 1.5 / 1.1
``\(`` ``\)`` ``\[`` ``\]`` the literal character; also ``\\``, ``\+``, ``\-``
==========================  ====================================================================

A ``+``/``-`` run is a weight only right after a word (or a closing parenthesis) and before a space,
punctuation, a bracket or the end: ``t-shirt``, ``a + b`` and ``1+1`` stay plain text. Adjacent fragments
of equal weight are merged, so a prompt without syntax is one fragment of weight 1.0 and tokenizes exactly
as the plain text encoder tokenizes it.

``BREAK`` (the word, in capitals, outside brackets) ends the chunk the tokens are in, as A1111 does: the next
tokens start a new one. Chunks end at a comma when one is among their last 20 tokens, the tokens after it moved
to the next chunk (A1111's comma backtracking, at its default 20).

Where this differs from A1111's ``parse_prompt_attention``: an unbalanced bracket is a
:class:`~diffblocks.components.errors.PromptSyntaxError` naming its position (A1111 closes it silently at
the end, or keeps a stray closing bracket as text); a backslash before any other character stays a backslash
(A1111 drops it); ``BREAK`` inside brackets is plain text (A1111 weighs the break itself, and it breaks nothing).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ..components.errors import PromptSyntaxError

ROUND = 1.1  # (text)
SQUARE = 1 / 1.1  # [text]
PLUS, MINUS = 1.1, 0.9  # each + / - of a suffix (compel's defaults)

_ESCAPABLE = "()[]\\+-"
_PUNCTUATION = set("()[]{},.:;!?\"\\")
_EXPLICIT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")  # ":1.3)" closing a "(" (A1111's pattern)
_LAST_WORD = re.compile(r"[^\s()\[\]{},.:;!?\"\\]+$")

Fragment = tuple[str, float]
BREAK = None  # a fragment of parse_prompt's list: A1111's BREAK, the end of a chunk
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")  # A1111's pattern: the spaces around it go too
COMMA_BACKTRACK = 20  # A1111's default: a full chunk ends at a comma among its last this many tokens


def parse_prompt(prompt: str) -> list[Fragment | None]:
    """Split ``prompt`` into ``(text, weight)`` fragments by the syntax above.

    Returns:
        The fragments in order, adjacent equal weights merged, :data:`BREAK` (None) where a ``BREAK`` ends a
        chunk; ``[("", 1.0)]`` for an empty prompt.

    Raises:
        PromptSyntaxError: a bracket that closes nothing, closes the other kind, or is never closed; or
            ``(word:x)`` with ``x`` not a number. Its ``position`` is the offending character's index.
    """
    return _Parser(prompt).parse()


def token_weights(fragments: Sequence[Fragment | None], tokenize: Callable[[list[str]], list[list[int]]]
                  ) -> tuple[list[int], list[float], list[int]]:
    """Token ids of ``fragments``, one weight per token (its fragment's), as A1111 does, and where the BREAKs are.

    Args:
        fragments: ``(text, weight)`` pairs and BREAKs, e.g. from :func:`parse_prompt`.
        tokenize: texts -> token ids of each, without start/end tokens.

    Returns:
        ``(ids, weights, breaks)``: ``breaks`` holds, for each BREAK, the number of tokens before it.
    """
    texts = [fragment for fragment in fragments if fragment is not BREAK]
    tokenized = iter(tokenize([text for text, _ in texts]))
    ids, weights, breaks = [], [], []
    for fragment in fragments:
        if fragment is BREAK:
            breaks.append(len(ids))
            continue
        tokens = next(tokenized)
        ids += tokens
        weights += [fragment[1]] * len(tokens)
    return ids, weights, breaks


def chunk_tokens(ids: Sequence[int], weights: Sequence[float], size: int, count: int | None = None,
                 breaks: Sequence[int] = (), comma: int | None = None, backtrack: int = COMMA_BACKTRACK
                 ) -> list[tuple[list[int], list[float]]]:
    """Split ids and weights into chunks of at most ``size`` tokens, as A1111 does: a chunk ends where it is full,
    at each of ``breaks`` (token counts: a BREAK there ends the chunk, even an empty one), and, when full, after
    the last ``comma`` (a token id) among its last ``backtrack`` tokens, the tokens after it moved to the next.

    Args:
        count: exactly this many chunks: missing ones are empty (the encoder pads them), chunks beyond are
            dropped (as the plain encoder truncates). Default: as many as needed (at least one).
    """
    chunks: list[tuple[list[int], list[float]]] = []
    chunk: tuple[list[int], list[float]] = ([], [])
    last_comma = -1
    pending = sorted(breaks)
    for position in range(len(ids) + 1):
        while pending and pending[0] == position:
            pending.pop(0)
            chunks.append(chunk)
            chunk, last_comma = ([], []), -1
        if position == len(ids):
            break
        if comma is not None and ids[position] == comma:
            last_comma = len(chunk[0])
        elif backtrack and len(chunk[0]) == size and last_comma != -1 and size - last_comma <= backtrack:
            keep = last_comma + 1
            chunks.append((chunk[0][:keep], chunk[1][:keep]))
            chunk, last_comma = (chunk[0][keep:], chunk[1][keep:]), -1
        if len(chunk[0]) == size:
            chunks.append(chunk)
            chunk, last_comma = ([], []), -1
        chunk[0].append(ids[position])
        chunk[1].append(weights[position])
    if chunk[0] or not chunks:
        chunks.append(chunk)
    if count is None:
        return chunks
    return (chunks + [([], [])] * count)[:count]


def _sign_weight(sign: str, count: int) -> float:
    return (PLUS if sign == "+" else MINUS) ** count


class _Parser:
    """One left-to-right pass: plain text collects into ``text``, brackets scale the pieces they enclose."""

    def __init__(self, prompt: str):
        self.prompt, self.i = prompt, 0
        self.pieces: list[list] = []  # [text, weight]
        self.open: list[tuple[str, int, int]] = []  # (bracket, index of its first piece, position)
        self.text: list[str] = []

    def parse(self) -> list[Fragment]:
        while self.i < len(self.prompt):
            self.step(self.prompt[self.i])
        self.flush()
        if self.open:
            bracket, _, position = self.open[-1]
            raise PromptSyntaxError.unbalanced(self.prompt, position, "is never closed")
        return _merge(self.pieces)

    def step(self, char: str) -> None:
        following = self.prompt[self.i + 1:self.i + 2]
        if char == "\\" and following and following in _ESCAPABLE:
            self.flush()
            self.pieces.append([following, 1.0])
            self.i += 2
        elif char in "([":
            self.flush()
            self.open.append((char, len(self.pieces), self.i))
            self.i += 1
        elif char in ")]":
            self.close(char)
        elif char == ":" and self.open and self.open[-1][0] == "(" and _EXPLICIT.match(self.prompt, self.i):
            self.close_explicit(_EXPLICIT.match(self.prompt, self.i))
        elif char in "+-" and self.text and _ends_word(self.text[-1]) and self.signs(self.i):
            self.weigh_word(self.signs(self.i))
        else:
            self.text.append(char)
            self.i += 1

    def signs(self, start: int) -> int:
        """Length of the weight suffix at ``start`` (0: none): one sign repeated, then a boundary."""
        prompt, end = self.prompt, start
        if start >= len(prompt) or prompt[start] not in "+-":
            return 0
        while end < len(prompt) and prompt[end] == prompt[start]:
            end += 1
        return end - start if end == len(prompt) or prompt[end].isspace() or prompt[end] in _PUNCTUATION else 0

    def close(self, char: str) -> None:
        if not self.open:
            raise PromptSyntaxError.unbalanced(self.prompt, self.i, "closes no bracket")
        bracket, start, position = self.open[-1]
        if bracket != {")": "(", "]": "["}[char]:
            raise PromptSyntaxError.unbalanced(
                self.prompt, self.i, f"does not match the {bracket!r} opened at position {position}")
        self.flush()
        self.open.pop()
        self.i += 1
        weight, suffix = (ROUND, self.signs(self.i)) if char == ")" else (SQUARE, 0)
        if suffix:
            weight = _sign_weight(self.prompt[self.i], suffix)
            self.i += suffix
        self.scale(start, weight)

    def close_explicit(self, match: re.Match) -> None:
        try:
            weight = float(match.group(1))
        except ValueError:
            raise PromptSyntaxError.bad_weight(self.prompt, match.start(1), match.group(1)) from None
        self.flush()
        self.scale(self.open.pop()[1], weight)
        self.i = match.end()

    def weigh_word(self, suffix: int) -> None:
        text = "".join(self.text)
        word = _LAST_WORD.search(text).group(0)
        self.text = list(text[:-len(word)])
        self.flush()
        self.pieces.append([word, _sign_weight(self.prompt[self.i], suffix)])
        self.i += suffix

    def flush(self) -> None:
        if self.text:
            parts = _BREAK_WORD.split("".join(self.text)) if not self.open else ["".join(self.text)]
            for index, part in enumerate(parts):
                if index:
                    self.pieces.append([BREAK, None])
                self.pieces.append([part, 1.0])
            self.text = []

    def scale(self, start: int, weight: float) -> None:
        for piece in self.pieces[start:]:
            piece[1] *= weight


def _ends_word(char: str) -> bool:
    return not char.isspace() and char not in _PUNCTUATION and char not in "+-"


def _merge(pieces: list[list]) -> list[Fragment | None]:
    merged: list[list] = []
    for text, weight in pieces:
        if text is BREAK:
            merged.append([BREAK, None])
        elif text and merged and merged[-1][0] is not BREAK and merged[-1][1] == weight:
            merged[-1][0] += text
        elif text:
            merged.append([text, weight])
    return [BREAK if text is BREAK else (text, weight) for text, weight in merged] or [("", 1.0)]
