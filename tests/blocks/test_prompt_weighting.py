"""The prompt weighting parser (A1111's attention syntax plus compel's +/- suffixes) and token chunking."""

import pytest

from diffblocks.blocks.prompt_weighting import chunk_count, chunk_tokens, parse_prompt, token_weights
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
]


@pytest.mark.parametrize("prompt, expected", PARSED, ids=[p or "<empty>" for p, _ in PARSED])
def test_parse_prompt(prompt, expected):
    got = parse_prompt(prompt)
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected], rel=1e-12)


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
    ids, weights = token_weights(parse_prompt("ab (cd:1.5) [e]"), tokenize)
    assert ids == [ord(c) for c in "abcde"]
    assert weights == pytest.approx([1, 1, 1.5, 1.5, DOWN])


def test_token_weights_of_an_empty_prompt():
    assert token_weights(parse_prompt(""), tokenize) == ([], [])


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
    if count is None:
        assert chunk_count(tokens, size) == expected
