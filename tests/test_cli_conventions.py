"""The command line's one convention, checked on every subcommand, and its daily-use
features (stdin queries, --format, -V, completion, suggestions), run as a user would."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

import anygram
from anygram import cli
from conftest import run_cli as run

TEXTS = ["abc abd", "abc", "xyz ab"]
# Commands whose only output is what they print; -o/--output redirects it there.
PRINTING = {"count", "prob", "ntd", "search", "info", "verify", "creativity", "attribute"}
# Commands with a main output of their own, named by -o/--output.
MAIN_OUTPUT = {"build", "eval-lm", "contamination", "dedup", "demo"}
# Commands that print no results (a walkthrough, a script, a server, a group of maintenance commands).
NO_FORMAT = {"demo", "completion", "serve", "index"}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conv")
    corpus = tmp / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp / "index"
    anygram.build_index(str(corpus), str(out), progress=False)
    return out


def occurrences(needle: str) -> int:
    """Brute force: overlapping occurrences in the corpus's texts."""
    return sum(sum(t.startswith(needle, i) for i in range(len(t))) for t in TEXTS)


def test_every_subcommand_follows_the_convention():
    commands = cli._subcommands(cli.parser())
    assert set(commands) == PRINTING | MAIN_OUTPUT | NO_FORMAT
    for name, sub in commands.items():
        rendered = sub.format_help()
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            where = f"anygram {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{where} has no help text"
            if action.default not in (None, False, []) and action.option_strings:
                shown = sub._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in shown, f"{where} does not show its default {action.default!r}"
        flags = {o for a in sub._actions for o in a.option_strings}
        if name in PRINTING | MAIN_OUTPUT:
            assert {"-o", "--output"} <= flags, f"anygram {name} has no -o/--output"
            assert "-o OUTPUT, --output OUTPUT" in rendered
        if name not in NO_FORMAT:
            assert "--format" in flags, f"anygram {name} has no --format"
            assert "table on a terminal" in rendered


def test_help_of_a_real_process_shows_defaults():
    assert "(default: 1000)" in " ".join(run("ntd", "--help").stdout.split())


def test_version():
    for flag in ("-V", "--version"):
        assert run(flag).stdout.strip() == f"anygram {anygram.__version__}"


def test_queries_from_stdin_a_file_and_arguments(index, tmp_path):
    queries = ["ab", "abc", "-", "zz"]
    piped = run("count", "-i", index, "-", "--format", "jsonl", stdin="\n".join(queries) + "\n\n")
    rows = [json.loads(line) for line in piped.stdout.splitlines()]
    # "-" on its own line is a query text like any other; blank lines are passed over.
    assert [(r["query"], r["count"]) for r in rows] == [(q, occurrences(q)) for q in queries]
    listed = tmp_path / "q.txt"
    listed.write_text("abc\nxyz\n")
    both = json.loads(run("count", "-i", index, "ab", "-f", listed, "--ids", "97,98").stdout)
    assert [(r["query"], r["count"]) for r in both] == [("ab", 4), ("abc", 2), ("xyz", 1), ("97,98", 4)]
    ids = run("count", "-i", index, "--as-ids", "-", "--format", "jsonl", stdin="97 98\n120,121\n").stdout
    assert [json.loads(line)["count"] for line in ids.splitlines()] == [4, 1]
    bad = subprocess.run([sys.executable, "-m", "anygram.cli", "count", "-i", str(index), "-"],
                         input=b"ok\n\xff\n", capture_output=True)
    assert bad.returncode == 2 and b"stdin:2: not valid UTF-8" in bad.stderr
    none = run("count", "-i", index, check=False)
    assert none.returncode == 2 and "give a query" in none.stderr


def test_formats_and_output_file(index, tmp_path):
    one = json.loads(run("count", "-i", index, "ab").stdout)
    assert one == {"query": "ab", "count": 4, "token_ids": [97, 98]}
    table = run("count", "-i", index, "ab", "xyz", "--format", "table").stdout.splitlines()
    assert table[0].split() == ["count", "query"] and table[1].split() == ["4", "'ab'"]
    ntd = [json.loads(line) for line in run("ntd", "-i", index, "ab", "x", "--format", "jsonl").stdout.splitlines()]
    # After "ab": c twice, d once, and the end of "xyz ab" (the separator 255).
    assert [{t["token_id"]: t["cont_cnt"] for t in r["top"]} for r in ntd] == [{99: 2, 100: 1, 255: 1}, {121: 1}]
    prob = json.loads(run("prob", "-i", index, "ab", "a", "--next", "c").stdout)
    assert [(p["context"], p["cont_cnt"], p["prompt_cnt"]) for p in prob] == [
        (c, occurrences(c + "c"), occurrences(c)) for c in ("ab", "a")]
    out = tmp_path / "counts.jsonl"
    assert run("count", "-i", index, "ab", "abc", "-o", out, "--format", "jsonl").stdout == ""
    assert [json.loads(line)["count"] for line in out.read_text().splitlines()] == [4, 2]
    assert json.loads(run("info", "-i", index, "--json").stdout)["num_documents"] == 3  # the old switch
    inside = run("count", "-i", index, "ab", "-o", index / "table.0", check=False)
    assert inside.returncode == 2 and "--output" in inside.stderr and (index / "table.0").stat().st_size > 0


def test_suggestions_for_mistyped_flags_commands_and_choices(index):
    flag = run("build", "in.jsonl", "--tokeniser", "t.json", check=False)
    assert flag.returncode == 2
    assert "usage: anygram build" in flag.stderr and "did you mean --tokenizer?" in flag.stderr
    command = run("cuont", "-i", index, "ab", check=False)
    assert command.returncode == 2 and "did you mean count?" in command.stderr
    choice = run("info", "-i", index, "--format", "tabel", check=False)
    assert choice.returncode == 2 and "did you mean table?" in choice.stderr


def test_messages_speak_the_cli(index, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    strict = run("build", bad, "-o", tmp_path / "s", "--strict", check=False)
    assert strict.returncode == 2 and "--strict" in strict.stderr and "strict=True" not in strict.stderr
    with pytest.raises(anygram.BuildError, match="strict=True"):
        anygram.build_index(str(bad), str(tmp_path / "p"), strict=True, progress=False)
    broken = tmp_path / "broken"
    shutil.copytree(index, broken)
    with open(broken / "tokenized.0", "r+b") as f:
        f.truncate(os.path.getsize(broken / "tokenized.0") - 1)
    verify = run("verify", "-i", broken, check=False)
    assert verify.returncode == 2 and "corrupt" in verify.stderr and "`anygram verify`" not in verify.stderr
    count = run("count", "-i", broken, "ab", check=False)
    assert count.returncode == 2 and "`anygram verify`" in count.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is the shell completion is for")
def test_bash_completion_completes_commands_and_flags():
    script = run("completion", "bash").stdout

    def complete(*words):
        line = " ".join(words)
        probe = (f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _anygram; '
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert complete("anygram", "cou") == ["count"]
    assert complete("anygram", "build", "--tok") == ["--token-width", "--tokenizer"]
    assert "--out" not in complete("anygram", "contamination", "--ou")  # hidden aliases are not offered
