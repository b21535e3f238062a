"""The shared helpers of builds, scans and eval-lm: atomic files (a killed writer leaves
the old file), run locks and journals (two runs never write one output; an unusable
progress file is a named error), the one JSONL reader (bad lines and corrupt files are
named errors in scans and eval-lm) and the one progress bar (eval-lm's model scoring)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import anygram
from anygram import evallm, scan
from anygram.atomic import atomic_file, write_json_atomic
from anygram.errors import InvalidArgumentError
from anygram.workdir import Journal, UnusableJournal
from conftest import build_from_tokens, tiny_gpt2

PYTHON_PATH = os.pathsep.join(p for p in sys.path if p)


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=PYTHON_PATH),
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, **kwargs)


def test_atomic_file_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    # The writer has written (and flushed) half of the new content when it is killed.
    proc = _python(
        "import sys\nfrom anygram.atomic import atomic_file\n"
        f"with atomic_file({str(target)!r}) as f:\n"
        "    f.write(b'new, half'); f.flush(); print('written', flush=True); sys.stdin.readline()\n")
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert target.read_text() == "old"
    # The next writer replaces it whole (and the half-written temporary with it).
    write_json_atomic(str(target), {"new": True})
    assert json.loads(target.read_text()) == {"new": True}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_atomic_file_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(str(target)) as f:
            f.write(b"new")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_journal_is_used_only_with_its_key(tmp_path):
    path = str(tmp_path / "journal.json")
    journal = Journal(path, {"min_len": 3}, version=1)
    journal.record({"tokenize": {"docs": 2}})
    journal.record({"split": {"shards": 1}})
    assert Journal(path, {"min_len": 3}, version=1).read() == {"tokenize": {"docs": 2}, "split": {"shards": 1}}
    with pytest.raises(UnusableJournal) as other_key:
        Journal(path, {"min_len": 4}, version=1).read()
    assert other_key.value.changed == ["min_len"]
    with pytest.raises(UnusableJournal, match="version"):
        Journal(path, {"min_len": 3}, version=2).read()
    (tmp_path / "journal.json").write_text('{"key": {"min_len": 3}, "steps": {"tok')
    with pytest.raises(UnusableJournal, match="unreadable"):
        Journal(path, {"min_len": 3}, version=1).read()


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    docs = [[1, 2, 3, 4, 1, 2, 3, 4], [5, 1, 2, 3, 4], [6, 7]]
    return anygram.Engine.open(build_from_tokens(str(tmp_path_factory.mktemp("idx")), docs, 2, 10, 9))


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(tmp_path, small_index):
    ranges = tmp_path / "ranges.jsonl"
    ranges.write_bytes(b"")
    # Another process holds the run lock of this output (as a running dedup does).
    holder = _python("import sys\nfrom anygram.workdir import RunLock\nfrom anygram.errors import AnygramError\n"
                     f"lock = RunLock({str(ranges)!r}, AnygramError, 'busy')\n"
                     "print('held', flush=True); sys.stdin.readline()\n")
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InvalidArgumentError, match=f"another run is writing {ranges}"):
            scan.run_dedup(small_index, str(ranges), min_len=3)
        assert ranges.read_bytes() == b"" and not os.path.exists(f"{ranges}.progress.json")
    finally:
        holder.communicate("go\n", timeout=30)
    summary = scan.run_dedup(small_index, str(ranges), min_len=3)
    assert summary["tokens_removed"] == 4 + 4  # [1 2 3 4] again in documents 0 and 1


def test_an_unreadable_progress_file_is_a_named_error(tmp_path, small_index):
    ranges = str(tmp_path / "ranges.jsonl")
    first = scan.run_dedup(small_index, ranges, min_len=3)
    with open(ranges + ".progress.json", "w") as f:
        f.write('{"signature": {"kind": "ded')  # cut short
    with pytest.raises(InvalidArgumentError, match=r"progress\.json, the progress of .*ranges\.jsonl, is unreadable"):
        scan.run_dedup(small_index, ranges, min_len=3)
    assert scan.run_dedup(small_index, ranges, min_len=3, restart=True) == first


def test_a_deleted_output_is_written_again_whole(tmp_path, small_index):
    ranges = tmp_path / "ranges.jsonl"
    scan.run_dedup(small_index, str(ranges), min_len=3)
    expected = ranges.read_text()
    ranges.unlink()  # the progress file still says the scan is done
    scan.run_dedup(small_index, str(ranges), min_len=3)
    assert ranges.read_text() == expected != ""


@pytest.mark.parametrize("content,problem", [
    (b'{"text": "\xff"}\n{"text": "a b"}\n', r":1: not valid UTF-8"),
    (b'\n{"text": \n{"text": "a b"}\n', r":2: not valid JSON"),
])
def test_bad_eval_lines_are_named_errors_in_scans_and_eval_lm(tmp_path, small_index, content, problem):
    path = tmp_path / "eval.jsonl"
    path.write_bytes(content)
    with pytest.raises(InvalidArgumentError, match=f"eval.jsonl{problem}"):
        scan.run_contamination(small_index, str(path), min_len=2)
    with pytest.raises(InvalidArgumentError, match=f"eval.jsonl{problem}"):
        evallm.load_jsonl(str(path), small_index)


def test_a_truncated_compressed_eval_file_is_a_named_error(tmp_path, small_index):
    path = tmp_path / "eval.jsonl.gz"
    whole = gzip.compress("".join(f'{{"text": [{i % 9}, {i % 7}, {i % 5}]}}\n' for i in range(2000)).encode())
    assert len(whole) > 400
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidArgumentError, match="eval.jsonl.gz: unreadable file"):
        scan.run_contamination(small_index, str(path), min_len=2)


def test_eval_lm_model_scoring_shows_a_progress_bar(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tiny_gpt2(tmp_path)
    docs = [np.arange(30) % 19, np.arange(7) % 19]
    quiet = evallm.model_logprobs(str(tmp_path / "m"), docs, 19, window=16, stride=8, device="cpu", progress=False)
    assert "model log-probs" not in capsys.readouterr().err
    shown = evallm.model_logprobs(str(tmp_path / "m"), docs, 19, window=16, stride=8, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "model log-probs" in err and "37.0/37.0" in err
    np.testing.assert_array_equal(quiet, shown)
