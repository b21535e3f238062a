"""Builds from Python: iterables of strings or dicts (a generator, a ``datasets``-like
object, duck-typed) and ``tokenizers.Tokenizer`` objects, checked against the same
documents built from a file."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from trained_tokenizer import train_gpt2_like

import anygram
from anygram.errors import BuildError, InvalidArgumentError

# Good documents, and the bad ones a file can hold too: a lone surrogate, no text field,
# a text that is not a string.
RECORDS = [
    {"text": "abc abd", "src": "a"},
    {"text": "x\udc80y"},
    {"body": "no text"},
    {"text": 7},
    {"text": "abc", "src": "b"},
    {"text": "ünïcödé 👍🏽"},
]


class DatasetLike:
    """What a HuggingFace ``datasets.Dataset`` offers a build: ``len`` and iteration of dicts."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


def files_of(index):
    return {name: (index / name).read_bytes() for name in ("tokenized.0", "offset.0")}


@pytest.fixture(scope="module")
def from_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("file")
    corpus = tmp / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    report = anygram.build_index(str(corpus), str(tmp / "index"), progress=False)
    return report, tmp / "index"


@pytest.mark.parametrize("make", [lambda: (r for r in RECORDS), lambda: DatasetLike(RECORDS), lambda: list(RECORDS)],
                         ids=["generator", "dataset-like", "list of dicts"])
def test_python_documents_build_the_index_a_file_builds(tmp_path, from_file, make):
    file_report, file_index = from_file
    report = anygram.build_index(make(), str(tmp_path / "index"), progress=False)
    assert files_of(tmp_path / "index") == files_of(file_index)
    assert report.skipped == file_report.skipped == {"lone surrogate": 1, "no 'text' field": 1,
                                                     "'text' is not a string": 1}
    assert report.skipped_examples[0] == "<python>:2: lone surrogate (U+DC80 at character 1)"
    engine = anygram.Engine.open(report.output)
    assert engine.count("abc") == 2
    assert json.loads(engine.get_doc_by_ix(1)["metadata"])["metadata"] == {"src": "b"}


def test_strings_and_strictness(tmp_path):
    report = anygram.build_index(iter(["abc", "abd", 3.5]), str(tmp_path / "i"), progress=False)
    assert report.num_documents == 2 and report.skipped == {"not a string or a dict": 1}
    with pytest.raises(BuildError, match=r"<python>:3: not a string or a dict"):
        anygram.build_index(iter(["abc", "abd", 3.5]), str(tmp_path / "s"), strict=True, progress=False)
    with pytest.raises(BuildError, match="no readable documents"):
        anygram.build_index(iter([]), str(tmp_path / "e"), progress=False)
    # A list of strings stays a list of paths, as before.
    with pytest.raises(BuildError, match="input not found"):
        anygram.build_index(["no such file"], str(tmp_path / "p"), progress=False)


def test_a_tokenizers_object_builds_what_its_file_builds(tmp_path):
    path = train_gpt2_like(str(tmp_path / "tokenizer.json"))
    texts = ["the cat of 3 and cats", "We'll see ünïcödé 日本語"]
    by_path = anygram.build_index(iter(texts), str(tmp_path / "by-path"), tokenizer=path, progress=False)
    by_object = anygram.build_index(iter(texts), str(tmp_path / "by-object"), tokenizer=HFTokenizer.from_file(path),
                                    progress=False)
    assert files_of(tmp_path / "by-object") == files_of(tmp_path / "by-path")
    engine = anygram.Engine.open(by_object.output)
    assert engine.tokenize("the cat") == HFTokenizer.from_file(path).encode("the cat").ids
    assert (tmp_path / "by-object" / "tokenizer.json").read_text() == HFTokenizer.from_file(path).to_str()
    with pytest.raises(InvalidArgumentError, match="tokenizers.Tokenizer, not int"):
        anygram.build_index(iter(texts), str(tmp_path / "bad"), tokenizer=5, progress=False)
