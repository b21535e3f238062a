"""The `anygram` command line, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import os

from conftest import run_cli as run


def test_build_query_inspect_verify(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["abc abd", "abc", "xyz"]))
    out = str(tmp_path / "cli-index")
    # Piped, the report is JSON; --format table is what a terminal shows.
    built = run("build", str(corpus), "--output", out, "--quiet")
    assert json.loads(built.stdout)["num_documents"] == 3
    assert "documents  3" in run("build", str(corpus), "-o", out, "-q", "--overwrite", "--format", "table").stdout
    assert json.loads(run("count", "--index", out, "ab").stdout)["count"] == 3
    assert json.loads(run("count", "--index", out, "--ids", "97,98,99").stdout)["count"] == 2
    prob = json.loads(run("prob", "--index", out, "ab", "--next", "c").stdout)
    assert (prob["prompt_cnt"], prob["cont_cnt"], prob["suffix_len"]) == (3, 2, 2)
    ntd = json.loads(run("ntd", "--index", out, "ab").stdout)
    assert {r["token"]: r["cont_cnt"] for r in ntd["top"]} == {"c": 2, "d": 1}
    info = run("info", "--index", out, "--format", "table").stdout
    assert "documents     3" in info and "UTF-8 bytes" in info
    assert json.loads(run("info", "--index", out).stdout)["num_documents"] == 3
    assert run("verify", "--index", out, "--format", "table").stdout.strip().endswith("OK")
    assert json.loads(run("verify", "--index", out).stdout)["ok"] is True


def test_errors_exit_2_with_a_message(tmp_path):
    missing = run("count", "--index", str(tmp_path / "nope"), "x", check=False)
    assert missing.returncode == 2 and "no such index directory" in missing.stderr
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "abc"}) + "\n")
    out = str(tmp_path / "i")
    run("build", str(corpus), "--output", out, "--quiet")
    bad = run("count", "--index", out, "--ids", "1,300", check=False)
    assert bad.returncode == 2 and "token id 300 at position 1" in bad.stderr
    again = run("build", str(corpus), "--output", out, "--quiet", check=False)
    assert again.returncode == 2 and "already holds an index" in again.stderr
    two = run("prob", "--index", out, "a", "--next", "bc", check=False)
    assert two.returncode == 2 and "must be exactly one" in two.stderr
    os.remove(os.path.join(out, "table.0"))
    gone = run("verify", "--index", out, check=False)
    assert gone.returncode == 2 and "table.0" in gone.stderr
