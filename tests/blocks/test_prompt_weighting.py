"""The prompt weighting parser (A1111's attention syntax plus compel's +/- suffixes) and token chunking."""

import pytest

from diffblocks.blocks.prompt_weighting import BREAK, chunk_tokens, parse_prompt, token_weights
from diffblocks.components.errors import InputValueError, PromptSyntaxError

UP, DOWN = 1.1, 1 / 1.1

PARSED = [
    # plain text is one fragment of weight 1, whatever it holds
    ("a cat", [("a cat", 1.0)]),
    ("", [("", 1.0)]),
    ("t-shirt, a + b, 1+1 = 2: ok", [("t-shirt, a + b, 1+1 = 2: ok", 1.0)]),
    # A1111 brackets and explicit weights
    ("a (cat) sat", [("a ", 1.0), ("cat", UP), (" sat", 1.0)]),
    ("a [cat]", [("a ", 1.0), ("cat", DOWN)]),
    ("a (cat:1.5) sat", [("a ", 1.0), ("cat", 1.5), (" sat", 1.0)]),
    ("(cat: 0.5 )", [("cat", 0.5)]),
    ("(cat:-1)", [("cat", -1.0)]),
    ("(a:b)", [("a:b", UP)]),  # not a number: the colon is text, the brackets weigh 1.1
    # nesting multiplies
    ("((cat))", [("cat", UP * UP)]),
    ("[[cat]]", [("cat", DOWN * DOWN)]),
    ("(a [b] c:1.5)", [("a ", 1.5), ("b", 1.5 * DOWN), (" c", 1.5)]),
    ("((a:2) b)", [("a", 2 * UP), (" b", UP)]),
    # equal weights merge, empty brackets vanish
    ("(a)(b)", [("ab", UP)]),
    ("a () b", [("a  b", 1.0)]),
    # escapes
    (r"\(a\) \[b\]", [("(a) [b]", 1.0)]),
    (r"c\+\+ and x\\y", [("c++ and x\\y", 1.0)]),
    (r"(\(a\))", [("(a)", UP)]),
    (r"a\b", [("a\\b", 1.0)]),  # a backslash before anything else stays
    # compel's suffixes: on the word before, or on a group (replacing its 1.1)
    ("a cat++ and dog--", [("a ", 1.0), ("cat", UP * UP), (" and ", 1.0), ("dog", 0.9 * 0.9)]),
    ("red-haired+ girl", [("red-haired", UP), (" girl", 1.0)]),
    ("cat+, dog-.", [("cat", UP), (", ", 1.0), ("dog", 0.9), (".", 1.0)]),
    ("(a b)+++", [("a b", UP ** 3)]),
    ("(a b)-", [("a b", 0.9)]),
    ("(cat++)", [("cat", UP ** 3)]),
    ("(a)-b", [("a", UP), ("-b", 1.0)]),  # a sign before a word char is text
    ("c++", [("c", UP * UP)]),
    ("-- a", [("-- a", 1.0)]),
    # A1111's BREAK: the word in capitals, outside brackets, its spaces dropped
    ("a cat BREAK a dog", [("a cat", 1.0), BREAK, ("a dog", 1.0)]),
    ("(cat) BREAK(dog)", [("cat", UP), BREAK, ("dog", UP)]),
    ("a BREAK BREAK b", [("a", 1.0), BREAK, BREAK, ("b", 1.0)]),
    ("(a BREAK b)", [("a BREAK b", UP)]),  # inside brackets: text (A1111 would weigh the break and not break)
    ("BREAKFAST, Break", [("BREAKFAST, Break", 1.0)]),
]


@pytest.mark.parametrize("prompt, expected", PARSED, ids=[p or "<empty>" for p, _ in PARSED])
def test_parse_prompt(prompt, expected):
    got = parse_prompt(prompt)
    assert [f if f is BREAK else f[0] for f in got] == [f if f is BREAK else f[0] for f in expected]
    weights = [[f[1] for f in fragments if f is not BREAK] for fragments in (got, expected)]
    assert weights[0] == pytest.approx(weights[1], rel=1e-12)


BAD = [
    ("a (cat", 2, "'(' at position 2 is never closed"),
    ("a cat)", 5, "')' at position 5 closes no bracket"),
    ("[a (b] c)", 5, "']' at position 5 does not match the '(' opened at position 3"),
    ("((a) b", 0, "'(' at position 0 is never closed"),
    ("x]", 1, "']' at position 1 closes no bracket"),
    ("(cat:1.2.3)", 5, "weight '1.2.3' at position 5"),
]


@pytest.mark.parametrize("prompt, position, words", BAD, ids=[p for p, _, _ in BAD])
def test_bad_syntax_names_the_position(prompt, position, words):
    with pytest.raises(PromptSyntaxError) as info:
        parse_prompt(prompt)
    assert info.value.position == position
    assert words in str(info.value)
    assert isinstance(info.value, InputValueError)  # located input errors pass through the pipeline unchanged


def test_error_shows_the_text_near_a_position_in_a_long_prompt():
    prompt = "a painting of a house by the sea, (sunset, golden light, " + "very detailed " * 10
    near = r"position 34 is never closed \(near '\.\.\.by the sea, \(sunset, gold\.\.\.'\)"
    with pytest.raises(PromptSyntaxError, match=near):
        parse_prompt(prompt)


def tokenize(texts):
    """One token per character, as the tiny test tokenizer does (spaces dropped)."""
    return [[ord(c) for c in text if c != " "] for text in texts]


def test_token_weights_give_each_token_its_fragment_weight():
    ids, weights, breaks = token_weights(parse_prompt("ab (cd:1.5) BREAK [e]"), tokenize)
    assert ids == [ord(c) for c in "abcde"]
    assert weights == pytest.approx([1, 1, 1.5, 1.5, DOWN])
    assert breaks == [4]  # after four tokens


def test_token_weights_of_an_empty_prompt():
    assert token_weights(parse_prompt(""), tokenize) == ([], [], [])


@pytest.mark.parametrize("tokens, size, count, expected", [
    (0, 75, None, 1), (1, 75, None, 1), (75, 75, None, 1), (76, 75, None, 2), (150, 75, None, 2),
    (151, 75, None, 3), (5, 14, 3, 3), (40, 14, 2, 2),
])
def test_chunks(tokens, size, count, expected):
    ids, weights = list(range(tokens)), [1.0] * tokens
    chunks = chunk_tokens(ids, weights, size, count)
    assert len(chunks) == expected
    assert all(len(chunk_ids) <= size and len(chunk_ids) == len(w) for chunk_ids, w in chunks)
    kept = [i for chunk_ids, _ in chunks for i in chunk_ids]
    assert kept == ids[:expected * size]  # in order; beyond ``count`` chunks the tokens are dropped


COMMA = -1


def a1111_chunks(ids, size, breaks=(), backtrack=20):
    """A1111's ``tokenize_line`` (sd_hijack_clip), its steps written out one by one: a BREAK (between fragments)
    ends the chunk; a comma marks the place; a token arriving at a full chunk ends it, after the last comma
    when that is within ``backtrack`` tokens of the end."""
    chunks, chunk, last_comma = [], [], -1
    for position, token in enumerate([*ids, None]):
        for _ in range(list(breaks).count(position)):
            chunks.append(chunk)
            chunk, last_comma = [], -1
        if token is None:
            break
        if token == COMMA:
            last_comma = len(chunk)
        elif len(chunk) == size and last_comma != -1 and len(chunk) - last_comma <= backtrack:
            chunks.append(chunk[:last_comma + 1])
            chunk, last_comma = chunk[last_comma + 1:], -1
        if len(chunk) == size:
            chunks.append(chunk)
            chunk, last_comma = [], -1
        chunk.append(token)
    return chunks + [chunk] if chunk or not chunks else chunks


@pytest.mark.parametrize("ids, breaks, expected", [
    # a comma 3 tokens before the end of a full chunk: the chunk ends after it, the 3 tokens move on
    (list(range(71)) + [COMMA] + list(range(100, 110)), (), [72, 10]),
    # a comma 30 tokens back is too far: the chunk is cut where it is full
    (list(range(45)) + [COMMA] + list(range(100, 140)), (), [75, 11]),
    # a comma right at the end: the chunk is full with it, nothing moves
    (list(range(74)) + [COMMA] + list(range(100, 105)), (), [75, 5]),
    # BREAK ends a chunk early, an empty one too (two in a row, or one at the start)
    (list(range(10)), (4,), [4, 6]),
    (list(range(10)), (4, 4), [4, 0, 6]),
    (list(range(10)), (0,), [0, 10]),
    (list(range(10)), (10,), [10]),  # a BREAK at the end ends the last chunk: no empty one after it
    # after a BREAK the comma marks of the chunk before are forgotten
    ([COMMA] + list(range(80)), (1,), [1, 75, 5]),
])
def test_chunks_end_at_breaks_and_after_commas_as_in_a1111(ids, breaks, expected):
    chunks = chunk_tokens(ids, [1.0] * len(ids), 75, breaks=breaks, comma=COMMA)
    assert [len(chunk_ids) for chunk_ids, _ in chunks] == expected
    assert [chunk_ids for chunk_ids, _ in chunks] == a1111_chunks(ids, 75, breaks)
    assert [i for chunk_ids, _ in chunks for i in chunk_ids] == ids  # nothing lost, in order
