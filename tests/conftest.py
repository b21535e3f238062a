"""Shared fixtures: small indexes built from token lists, the brute-force oracle, the
`anygram` command in a subprocess, a tiny language model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

import anygram

# `anygram` subprocesses import the code under test (this process's path), from any directory.
CLI_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def run_cli(*args, check: bool = True, stdin: Optional[str] = None, cwd=None) -> subprocess.CompletedProcess:
    """``python -m anygram.cli ARGS`` (each argument as a string), its output captured; with
    ``check``, asserts that it succeeded."""
    proc = subprocess.run([sys.executable, "-m", "anygram.cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin, cwd=cwd, env=CLI_ENV)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def brute_longest_span(engine, ids):
    """The leftmost of the longest ids[start:end] with a non-zero count, by trying them all."""
    for length in range(len(ids), 0, -1):
        for start in range(len(ids) - length + 1):
            if engine.count(ids[start : start + length]) > 0:
                return start, start + length
    return 0, 0


def tiny_gpt2(directory):
    """A saved 1-layer GPT-2 of 20 token ids, random weights (torch's seed 0): ``(model, path)``."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=20, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=None, eos_token_id=None)
    path = os.path.join(str(directory), "m")
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return transformers.GPT2LMHeadModel.from_pretrained(path).eval(), path


SEPARATOR = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
DTYPE = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def build_from_tokens(directory: str, docs: Sequence[Sequence[int]], width: int, vocab_size: int,
                      eos_token_id: int, shards: int = 1, name: str = "index", accelerator: bool = True) -> str:
    """Builds an index of pre-tokenized documents through the public build path (.npy input).
    With search accelerators by default, so that every test that queries these indexes also
    checks the accelerated search (builds leave them out unless asked)."""
    os.makedirs(directory, exist_ok=True)
    flat = np.asarray([t for d in docs for t in d], dtype=DTYPE[width])
    starts = np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)
    np.save(os.path.join(directory, "corpus.npy"), flat)
    np.save(os.path.join(directory, "corpus.offsets.npy"), starts)
    out = os.path.join(directory, name)
    anygram.build_index(os.path.join(directory, "corpus.npy"), out, token_width=width,
                        vocab_size=vocab_size, eos_token_id=eos_token_id, shards=shards, progress=False,
                        accelerator=accelerator)
    return out


class Oracle:
    """Answers every query by scanning the documents."""

    def __init__(self, docs: Sequence[Sequence[int]], eos: int):
        self.docs = [list(d) for d in docs]
        self.eos = eos
        self.total = sum(len(d) + 1 for d in self.docs)

    def _continuations(self, query: Sequence[int]) -> Counter:
        q = list(query)
        out: Counter = Counter()
        for doc in self.docs:
            if not q:
                # Every position: the separator (reported as eos) and each token.
                out[self.eos] += 1
                out.update(doc)
                continue
            for i in range(len(doc) - len(q) + 1):
                if doc[i:i + len(q)] == q:
                    j = i + len(q)
                    out[doc[j] if j < len(doc) else self.eos] += 1
        return out

    def count(self, query: Sequence[int]) -> int:
        if not query:
            return self.total
        return sum(self._continuations(query).values())

    def ntd(self, context: Sequence[int]) -> Dict[int, int]:
        return dict(sorted(self._continuations(context).items()))

    def suffix_len(self, context: Sequence[int]) -> int:
        for n in range(len(context), -1, -1):
            if self.count(context[len(context) - n:]) > 0:
                return n
        return 0

    def prob(self, context: Sequence[int], token: int):
        prompt = self.count(context)
        if prompt == 0:
            return 0, 0, -1.0
        cont = self.count(list(context) + [token])
        return prompt, cont, cont / prompt


# A skip whose reason starts with this is allowed even under ANYGRAM_NO_SKIP: the benchmark
# corpora in ../shared/data are not part of the project, so no test may need them to pass.
SHARED_DATA_SKIP = "../shared/data is not present"


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data when present (benchmark corpora and the GPT-2 tokenizer): extra checks on
    real data where it exists; every property they check is also tested on data the tests make."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.abspath(os.path.join(here, "..", "..", "shared", "data"))
    if not os.path.isfile(os.path.join(path, "gpt2-tokenizer.json")):
        pytest.skip(SHARED_DATA_SKIP)
    return path


def _fail_skip_under_no_skip(report) -> None:
    """With ANYGRAM_NO_SKIP=1 (set by .ci/run), a skip is a failure: a missing peer (infini-gram,
    tokengrams), browser, server or optional extra is a broken CI set-up, not a pass."""
    if not report.skipped or os.environ.get("ANYGRAM_NO_SKIP") != "1" or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    if reason.startswith(SHARED_DATA_SKIP):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under ANYGRAM_NO_SKIP=1 (CI must install what this needs): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _fail_skip_under_no_skip((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip (a peer not installed) skips at collection.
    _fail_skip_under_no_skip((yield).get_result())


def kill_when_paused(proc, checkpoint: str) -> str:
    """Reads a build's messages (``proc``: started with ``ANYGRAM_BUILD_PAUSE_AT=checkpoint``
    and ``stderr=PIPE``, text) until it reports the pause at ``checkpoint`` (a build that
    resumes says so first), then kills it with SIGKILL; returns what it said. The kill lands
    exactly at that step, not at a moment chosen by a timer."""
    seen = []
    while True:
        line = proc.stderr.readline()
        seen.append(line)
        if not line:
            proc.wait()
            raise AssertionError(f"the build ended without pausing at {checkpoint}: {''.join(seen)}")
        if f"paused at {checkpoint}" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return "".join(seen)
