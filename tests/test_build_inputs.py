"""What a build does with awkward inputs: text that is not Unicode (lone surrogates),
hidden files and directories, dangling and looping symbolic links. Each is skipped and
counted (an error under ``strict``), never a traceback or a stray work directory."""

from __future__ import annotations

import functools
import json
import os

import pytest

import anygram
from anygram.errors import BuildError, InvalidArgumentError
from conftest import run_cli

# Failures are what these tests look at.
cli = functools.partial(run_cli, check=False)


def leftovers(directory):
    return sorted(n for n in os.listdir(directory) if ".build-" in n)


def test_a_lone_surrogate_is_skipped_and_counted(tmp_path):
    corpus = tmp_path / "c.jsonl"
    # json.dumps writes the surrogate as the escape "\ud800": valid JSON, not valid text.
    corpus.write_text(json.dumps({"text": "good one"}) + "\n" + json.dumps({"text": "bad \ud800 here"}) + "\n"
                      + json.dumps({"text": "good two"}) + "\n")
    report = anygram.build_index(str(corpus), str(tmp_path / "index"), progress=False)
    assert report.num_documents == 2 and report.skipped == {"lone surrogate": 1}
    assert "c.jsonl:2: lone surrogate" in report.skipped_examples[0]
    engine = anygram.Engine.open(report.output)
    assert engine.count("good") == 2
    with pytest.raises(BuildError, match=r"c\.jsonl:2: lone surrogate"):
        anygram.build_index(str(corpus), str(tmp_path / "strict"), strict=True, progress=False)
    proc = cli("build", corpus, "--output", tmp_path / "strict", "--strict", "--quiet")
    assert proc.returncode == 2 and "c.jsonl:2: lone surrogate" in proc.stderr and "Traceback" not in proc.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "strict").exists()


def test_a_failed_build_with_nothing_to_resume_leaves_no_work_directory(tmp_path, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "abc"}) + "\n")
    from anygram import builder

    def broken(*args, **kwargs):
        raise RuntimeError("a failure that is not anygram's own")

    monkeypatch.setattr(builder, "_tokenize_all", broken)
    with pytest.raises(RuntimeError):
        anygram.build_index(str(corpus), str(tmp_path / "index"), progress=False)
    assert leftovers(tmp_path) == []


def test_contamination_and_eval_lm_name_a_lone_surrogate(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "some text to match against"}) + "\n")
    index = anygram.build_index(str(corpus), str(tmp_path / "index"), progress=False).output
    evalset = tmp_path / "e.jsonl"
    evalset.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": "x\udc80y"}) + "\n")
    engine = anygram.Engine.open(index)
    with pytest.raises(InvalidArgumentError, match=r"example 1, field 'text': lone surrogate U\+DC80 at character 1"):
        anygram.scan.run_contamination(engine, str(evalset))
    proc = cli("contamination", "--index", index, "--eval", evalset)
    assert proc.returncode == 2 and "lone surrogate" in proc.stderr and "Traceback" not in proc.stderr
    from anygram import evallm

    with pytest.raises(InvalidArgumentError, match="example 2, field 'text': lone surrogate"):
        evallm.load_jsonl(str(evalset), engine)


def make_awkward_directory(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / ".git" / "objects").mkdir(parents=True)
    (data / "a.jsonl").write_text(json.dumps({"text": "visible alpha"}) + "\n")
    (data / "sub" / "b.txt").write_text("visible beta")
    (data / ".git" / "objects" / "pack.txt").write_text("hidden gamma")
    (data / ".env").write_text("hidden delta")
    (data / "sub" / ".cache.jsonl").write_text(json.dumps({"text": "hidden epsilon"}) + "\n")
    (tmp_path / "outside.txt").write_text("linked zeta")
    (data / "linked.txt").symlink_to(tmp_path / "outside.txt")  # a link that works is followed
    (data / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (data / "self.txt").symlink_to(data / "self.txt")
    (data / "sub" / "up").symlink_to(data)  # a directory loop
    return data


def test_hidden_entries_are_left_out_and_bad_links_skipped_and_counted(tmp_path):
    data = make_awkward_directory(tmp_path)
    with pytest.warns(UserWarning, match="dangling.txt: dangling symlink"):
        report = anygram.build_index(str(data), str(tmp_path / "index"), progress=False)
    engine = anygram.Engine.open(report.output)
    assert engine.num_documents == 3
    for word, n in [("visible", 2), ("linked", 1), ("hidden", 0)]:
        assert engine.count(word) == n, word
    assert report.skipped == {"dangling symlink": 1, "symlink loop": 2}
    assert any(e.startswith(str(data / "dangling.txt")) for e in report.skipped_examples)
    assert any(e.startswith(str(data / "sub" / "up")) for e in report.skipped_examples)

    with pytest.raises(BuildError, match="dangling.txt: dangling symlink"):
        anygram.build_index(str(data), str(tmp_path / "strict"), strict=True, progress=False)
    proc = cli("build", data, "--output", tmp_path / "strict", "--strict", "--quiet")
    assert proc.returncode == 2 and "dangling.txt: dangling symlink" in proc.stderr, proc.stderr
    proc = cli("build", data, "--output", tmp_path / "lenient", "--quiet", "--format", "table")
    assert proc.returncode == 0, proc.stderr
    assert "skipped    3 document(s)" in proc.stdout and "self.txt: symlink loop" in proc.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "strict").exists()


def test_a_named_input_that_is_a_bad_link_is_an_error(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(BuildError, match="loop: symlink loop"):
        anygram.build_index(str(tmp_path / "loop"), str(tmp_path / "index"), progress=False)
