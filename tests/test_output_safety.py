"""Outputs never destroy inputs or indexes: `build --overwrite` replaces only an index,
and no command writes over an input, an index file or another output of the same run
(symbolic and hard links included). Run as a user would: real subprocesses, the
files compared byte for byte before and after."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

import anygram
from anygram.errors import InvalidArgumentError

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "anygram.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV)


def snapshot(root) -> dict:
    """Every file under ``root`` (or ``root`` itself) by path, with its content's digest."""
    root = str(root)
    if os.path.isfile(root):
        return {root: hashlib.sha256(pathlib.Path(root).read_bytes()).hexdigest()}
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    return out


def write_corpus(path, texts):
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


TEXTS = ["the same sentence repeats here, the same sentence repeats here.", "a b c d e f g h",
         "the same sentence repeats here and there", "unrelated words only"]


@pytest.fixture(scope="module")
def corpus_and_index(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    corpus = write_corpus(base / "corpus.jsonl", TEXTS)
    index = base / "index"
    anygram.build_index(str(corpus), str(index), progress=False)
    return base, corpus, index


def assert_refused(proc, *names):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for name in names:
        assert str(name) in proc.stderr, (name, proc.stderr)


# ------------------------------------------------------------ build --overwrite


def test_overwrite_refuses_what_is_not_an_index(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", TEXTS)
    user_dir = tmp_path / "my-files"
    (user_dir / "sub").mkdir(parents=True)
    (user_dir / "notes.txt").write_text("precious")
    (user_dir / "sub" / "table.0").write_text("looks like an index file, in a subdirectory")
    a_file = tmp_path / "report.txt"
    a_file.write_text("precious too")
    # A directory with index files and one more: not recognizably an index.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "tokenized.0").write_bytes(b"\xff\xff")
    (mixed / "thesis.tex").write_text("precious")
    for target, why in [(user_dir, "not an index directory"), (a_file, "it is a file"), (mixed, "thesis.tex")]:
        before = snapshot(tmp_path)
        proc = run("build", corpus, "--output", target, "--overwrite", "--quiet")
        assert_refused(proc, target, why, "--overwrite")
        assert snapshot(tmp_path) == before
        with pytest.raises(InvalidArgumentError, match="overwrite=True"):
            anygram.build_index(str(corpus), str(target), overwrite=True, progress=False)
        assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["corpus.jsonl", "mixed", "my-files", "report.txt"]


def test_overwrite_refuses_the_current_directory_and_the_input_itself(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_corpus(data / "a.jsonl", TEXTS)
    before = snapshot(tmp_path)
    # The current directory (holding the corpus), and the input directory itself.
    assert_refused(run("build", "data", "--output", ".", "--overwrite", "--quiet", cwd=tmp_path), "input")
    assert_refused(run("build", "data", "--output", "data", "--overwrite", "--quiet", cwd=tmp_path),
                   "--output", str(data))
    assert_refused(run("build", "a.jsonl", "--output", ".", "--overwrite", "--quiet", cwd=data), "input")
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_overwrite_replaces_an_index_and_a_link_is_refused(tmp_path):
    first = write_corpus(tmp_path / "first.jsonl", TEXTS[:2])
    second = write_corpus(tmp_path / "second.jsonl", TEXTS)
    out = tmp_path / "index"
    assert run("build", first, "--output", out, "--quiet").returncode == 0
    link = tmp_path / "link"
    link.symlink_to(out)
    before = snapshot(out)
    assert_refused(run("build", second, "--output", link, "--overwrite", "--quiet"), link, "symbolic link")
    assert snapshot(out) == before
    assert_refused(run("build", second, "--output", out, "--quiet"), out, "already holds an index", "--overwrite")
    built = run("build", second, "--output", out, "--overwrite", "--quiet")
    assert built.returncode == 0, built.stderr
    assert anygram.Engine.open(str(out)).num_documents == len(TEXTS)
    # The old index was put aside and removed; nothing else is left beside the new one.
    assert sorted(os.listdir(tmp_path)) == ["first.jsonl", "index", "link", "second.jsonl"]


# ----------------------------------------------------- outputs aliasing inputs


def test_dedup_outputs_inside_the_index_are_refused(tmp_path, corpus_and_index):
    _, _, index = corpus_and_index
    before = snapshot(index)
    assert_refused(run("dedup", "--index", index, "--min-len", "4", "--ranges", tmp_path / "r.jsonl",
                       "--write", index / "tokenized.0"), "--write", index, "inside index")
    assert_refused(run("dedup", "--index", index, "--min-len", "4", "--ranges", index / "table.0"),
                   "--ranges", "--index")
    # A hard link to an index file, elsewhere, is the index file too.
    os.link(index / "table.0", tmp_path / "hard")
    assert_refused(run("dedup", "--index", index, "--min-len", "4", "--ranges", tmp_path / "hard"), "--ranges",
                   "inside index")
    assert snapshot(index) == before
    assert sorted(os.listdir(tmp_path)) == ["hard"]
    assert anygram.Engine.open(str(index)).verify()["ok"]


def test_dedup_write_and_ranges_at_one_path_are_refused(tmp_path, corpus_and_index):
    _, _, index = corpus_and_index
    same = tmp_path / "x.jsonl"
    assert_refused(run("dedup", "--index", index, "--min-len", "4", "--ranges", same, "--write", same),
                   "--write", "--ranges", "same file")
    assert not same.exists()
    # A link to the other output is the same file.
    (tmp_path / "ranges.jsonl").write_text("")
    (tmp_path / "alias").symlink_to(tmp_path / "ranges.jsonl")
    assert_refused(run("dedup", "--index", index, "--min-len", "4", "--ranges", tmp_path / "ranges.jsonl",
                       "--write", tmp_path / "alias"), "same file")
    # Distinct paths work, and the cleaned corpus is really cleaned.
    ok = run("dedup", "--index", index, "--min-len", "4", "--ranges", tmp_path / "r.jsonl", "--write",
             tmp_path / "w.jsonl")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tokens_removed"] > 0
    written = sum(len(json.loads(line)["text"]) for line in open(tmp_path / "w.jsonl"))
    assert written == sum(len(t) for t in TEXTS) - json.loads(ok.stdout)["tokens_removed"]


def test_contamination_outputs_aliasing_the_eval_set_or_the_index_are_refused(tmp_path, corpus_and_index):
    _, _, index = corpus_and_index
    evalset = write_corpus(tmp_path / "e.jsonl", ["the same sentence repeats here", "nothing"])
    (tmp_path / "e-link.jsonl").symlink_to(evalset)
    before, index_before = snapshot(tmp_path), snapshot(index)
    common = ["contamination", "--index", index, "--eval", evalset, "--min-len", "4"]
    assert_refused(run(*common, "--out", evalset), "--out", "--eval", evalset)
    assert_refused(run(*common, "--out", tmp_path / "e-link.jsonl"), "--out", "--eval")
    assert_refused(run(*common, "--html", index / "anygram.json"), "--html", "inside index")
    assert_refused(run(*common, "--summary", evalset), "--summary", "--eval")
    assert_refused(run(*common, "--out", tmp_path / "o.jsonl", "--summary", tmp_path / "o.jsonl"),
                   "--summary", "--out")
    assert snapshot(tmp_path) == before and snapshot(index) == index_before
    # The Python function refuses in its own words.
    with pytest.raises(InvalidArgumentError, match="out .* is the same file as eval_path"):
        anygram.scan.run_contamination(anygram.Engine.open(str(index)), str(evalset), out=str(evalset))
    assert snapshot(tmp_path) == before


def test_eval_lm_outputs_aliasing_its_inputs_are_refused(tmp_path, corpus_and_index):
    import numpy as np

    _, _, index = corpus_and_index
    np.save(tmp_path / "t.npy", np.array([97, 98, 99], dtype=np.uint8))
    np.save(tmp_path / "o.npy", np.array([0, 3]))
    np.save(tmp_path / "lm.npy", np.log([0.5, 0.5, 0.5]))
    before = snapshot(tmp_path)
    common = ["eval-lm", "--index", index, "--tokens", tmp_path / "t.npy", "--offsets", tmp_path / "o.npy",
              "--lm-logprobs", tmp_path / "lm.npy"]
    assert_refused(run(*common, "--json", tmp_path / "lm.npy"), "--json", "--lm-logprobs")
    assert_refused(run(*common, "--json", index / "anygram.json"), "--json", "inside index")
    assert snapshot(tmp_path) == before


def test_demo_rebuild_refuses_a_directory_that_is_not_an_index(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    a_file = tmp_path / "file.txt"
    a_file.write_text("precious too")
    before = snapshot(tmp_path)
    assert_refused(run("demo", "--output", target, "--rebuild"), target, "not an index directory", "rebuild")
    assert_refused(run("demo", "--output", a_file), a_file, "it is a file")
    assert snapshot(tmp_path) == before
