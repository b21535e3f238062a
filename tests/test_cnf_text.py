"""CNF query text: the one parser (anygram.cnf.parse) against a brute-force builder of
query text, and the engine and the server reading text through it."""

from __future__ import annotations

import json

import hypothesis.strategies as st
from hypothesis import given

import anygram
from anygram import cnf

# n-gram texts: words, none of them AND or OR (they may hold AND/OR as parts of words,
# e.g. ANDROID), so that joining them is unambiguous.
words = st.text(alphabet="abANDOR", min_size=1, max_size=5).filter(lambda w: w not in ("AND", "OR"))
terms = st.lists(words, min_size=1, max_size=3).map(" ".join)


@given(st.lists(st.lists(terms, min_size=1, max_size=3), min_size=1, max_size=3))
def test_parse_inverts_joining_clauses_with_and_and_terms_with_or(clauses):
    text = " AND ".join(" OR ".join(clause) for clause in clauses)
    assert cnf.parse(text) == clauses
    assert cnf.is_cnf_text(text) == (len(clauses) > 1 or len(clauses[0]) > 1)


def test_or_binds_tighter_and_words_holding_and_or_are_not_split():
    assert cnf.parse("a OR b AND c") == [["a", "b"], ["c"]]
    assert cnf.parse("ANDROID ORDER") == [["ANDROID ORDER"]]
    assert not cnf.is_cnf_text("ANDROID ORDER")


def test_engine_and_server_read_cnf_text_through_the_parser(tmp_path):
    from anygram_server import tokenization

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["the cat sat", "a dog ran", "the dog sat"]))
    engine = anygram.Engine.open(anygram.build_index(str(corpus), str(tmp_path / "idx"), progress=False).output)
    text = "the cat AND a dog OR ran"
    assert engine.cnf(text) == [[engine.tokenize(t) for t in clause] for clause in cnf.parse(text)]
    assert tokenization.parse_cnf_text is cnf.parse and tokenization.is_cnf_text is cnf.is_cnf_text
