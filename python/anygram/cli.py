"""The ``anygram`` command line: build, query, inspect and verify indexes.

One convention for every command:

* ``-o/--output`` names the command's main output (an index, a results file); commands
  that only print results take it too and then write there instead of stdout.
* ``--format {table,json,jsonl}`` chooses how results are printed; by default a table on
  a terminal and JSON when stdout is piped.
* Queries come from arguments, ``-f/--queries-file FILE`` or stdin (``-``), one a line.
* Every option's default is shown by ``--help``; ``anygram completion bash`` prints a
  shell completion script; a mistyped flag or command gets a suggestion.

Older spellings (``--out``, ``--ranges``, ``--json``) still work as hidden aliases.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.metadata
import io
import json
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import AnygramError, InvalidArgumentError, InvalidQueryError

FORMATS = ("table", "json", "jsonl")
STDIN = "-"
Query = Union[str, List[int]]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has a real one (not None or an unset switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default in (None, False, argparse.SUPPRESS) \
                or action.default == []:
            return text
        return text + " (default: %(default)s)"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the choice closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class _Parser(argparse.ArgumentParser):
    """argparse with defaults in --help and suggestions for mistyped choices."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        # argparse's own message for a wrong subcommand or --format value: add the closest choice.
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = [c.strip().strip("'") for c in m.group(2).split(",")]
            message += did_you_mean(m.group(1), choices)
        super().error(message)


class _NamedStore(argparse.Action):
    """Stores the value and the spelling the user typed (``--out`` or ``--output``), so that
    messages name the flag as it was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_flag", option_string)


def _flag(args, dest: str, default: str) -> str:
    return getattr(args, f"{dest}_flag", None) or default


def _add_output(p: argparse.ArgumentParser, help: str, old: Sequence[str] = (), **kwargs: Any) -> None:
    """``-o/--output`` (the main output), and older spellings as hidden aliases."""
    p.add_argument("-o", "--output", action=_NamedStore, help=help, **kwargs)
    for name in old:
        p.add_argument(name, dest="output", action=_NamedStore, help=argparse.SUPPRESS)


def _add_format(p: argparse.ArgumentParser, old_json_switch: bool = False) -> None:
    p.add_argument("--format", choices=FORMATS,
                   help="how results are printed (default: table on a terminal, json when piped)")
    if old_json_switch:
        p.add_argument("--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS)


def _format(args) -> str:
    if getattr(args, "format", None):
        return args.format
    destination_is_terminal = getattr(args, "output", None) is None and sys.stdout.isatty()
    return "table" if destination_is_terminal else "json"


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _emit(args, result: Any, table: Callable[[], str], records: Optional[List[Any]] = None,
          to_file: bool = False) -> None:
    """Prints ``result`` in the chosen format (``records``: its lines for jsonl, default the
    result itself, or each item of a list). ``to_file``: -o/--output names where the
    printed result goes (commands whose only output is what they print)."""
    fmt = _format(args)
    if fmt == "table":
        text = table()
    elif fmt == "json":
        text = json.dumps(result, indent=2, ensure_ascii=False, default=_jsonable)
    else:
        lines = records if records is not None else (result if isinstance(result, list) else [result])
        text = "\n".join(json.dumps(r, ensure_ascii=False, default=_jsonable) for r in lines)
    if to_file and args.output is not None and args.output != STDIN:
        from .atomic import write_atomic

        write_atomic(args.output, text + "\n")
    else:
        print(text)


def _check_print_output(args) -> None:
    """-o/--output of a command that prints: not a file of the index."""
    if getattr(args, "output", None) not in (None, STDIN):
        from .paths import check_outputs

        check_outputs({"--output": args.output}, index_dirs={"--index": args.index})


def _open(args):
    from .engine import Engine

    return Engine.open(args.index, tokenizer=getattr(args, "tokenizer", None),
                       verbatim=getattr(args, "verbatim", False),
                       token_width=getattr(args, "token_width", None),
                       vocab_size=getattr(args, "vocab_size", None),
                       eos_token_id=getattr(args, "eos_token_id", None))


def _parse_ids(text: str, where: str) -> List[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise InvalidQueryError(f"{where} must be token ids separated by commas or spaces, got {text!r}") from None


def _read_lines(path: str) -> List[Tuple[str, str]]:
    """``(place, line)`` for every non-blank line of ``path`` (``-``: stdin), checked to be UTF-8."""
    name = "stdin" if path == STDIN else path
    if path == STDIN:
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise InvalidArgumentError(f"--queries-file {path}: {e.strerror}") from None
    out = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            out.append((f"{name}:{number}", raw.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise InvalidQueryError(f"{name}:{number}: not valid UTF-8 ({e})") from None
    return out


def _queries(args, what: str = "query") -> List[Tuple[str, Query]]:
    """The queries of a command, in order: arguments (``-``: stdin, one a line), ``--ids``,
    then ``--queries-file``. Each is ``(as given, text or token ids)``; with ``--as-ids``
    the texts are token ids too."""
    given: List[Tuple[str, str]] = []
    for arg in args.queries:
        given += _read_lines(STDIN) if arg == STDIN else [("argument", arg)]
    if args.queries_file is not None:
        given += _read_lines(args.queries_file)
    out: List[Tuple[str, Query]] = []
    for place, text in given:
        out.append((text, _parse_ids(text, f"{what} {place}") if args.as_ids else text))
    for ids in args.ids or []:
        out.append((ids, _parse_ids(ids, "--ids")))
    if not out:
        raise InvalidQueryError(f"give a {what}: as an argument, --ids, -f FILE, or '-' to read them from stdin")
    return out


def _ids_of(engine, query: Query) -> List[int]:
    return query if isinstance(query, list) else engine.tokenize_query(query)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _shown(query: Query) -> str:
    return " ".join(map(str, query)) if isinstance(query, list) else repr(query)


def cmd_build(args) -> int:
    from .builder import build_index, check_output

    check_output(args.output, [os.path.abspath(i) for i in args.input], args.overwrite, _BUILD_FLAGS)
    report = build_index(
        args.input, args.output, tokenizer=args.tokenizer, shards=_shards_arg(args.shards),
        token_width=args.token_width, vocab_size=args.vocab_size, eos_token_id=args.eos_token_id,
        text_field=args.text_field, text_mode=args.text_mode, metadata=not args.no_metadata,
        strict=args.strict, overwrite=args.overwrite, workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(), mem=args.mem, resume=not args.no_resume,
        accelerator=args.accelerator, ray=args.ray, tmp=args.tmp,
    )
    # -o is the index here: the report always goes to stdout.
    _emit(args_printing_to_stdout(args), dataclasses.asdict(report), report.summary)
    return 0


def _shards_arg(value: str):
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"--shards must be a positive integer or 'auto', not {value!r}") from None


def cmd_count(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    queries = _queries(args)
    ids = [_ids_of(engine, q) for _, q in queries]
    counts = engine.count_batch(ids).tolist()
    results = [{"query": given, "count": n, "token_ids": t} for (given, _), n, t in zip(queries, counts, ids)]
    _emit(args, results[0] if len(results) == 1 else results,
          lambda: _table(["count", "query"], [[f"{r['count']:,}", _shown(q)] for r, (_, q) in zip(results, queries)]),
          records=results, to_file=True)
    return 0


def _next_token(engine, args) -> int:
    if args.next_id is not None:
        return args.next_id
    if args.next is None:
        raise InvalidQueryError("give the next token as --next TEXT or --next-id ID")
    ids = engine.tokenize(args.next)
    if len(ids) != 1:
        raise InvalidQueryError(f"--next {args.next!r} is {len(ids)} tokens {ids}; it must be exactly one")
    return ids[0]


def cmd_prob(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    queries = _queries(args, "context")
    token = _next_token(engine, args)
    results = [{"context": given} | engine.prob(_ids_of(engine, q), token, n=args.n) for given, q in queries]
    rows = [[f"{r['prob']:.6g}", r["cont_cnt"], r["prompt_cnt"], r.get("suffix_len", args.n), _shown(q)]
            for r, (_, q) in zip(results, queries)]
    _emit(args, results[0] if len(results) == 1 else results,
          lambda: _table(["prob", "cont_cnt", "prompt_cnt", "suffix_len" if args.n is None else "n", "context"], rows),
          records=results, to_file=True)
    return 0


def cmd_ntd(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    queries = _queries(args, "context")
    results = []
    for given, query in queries:
        result = engine.ntd(_ids_of(engine, query), n=args.n, max_support=args.max_support)
        by_token = result["result_by_token_id"]
        top = sorted(by_token.items(), key=lambda kv: -kv[1]["cont_cnt"])[: args.top]
        rows = []
        for token, r in top:
            row = {"token_id": token, "cont_cnt": r["cont_cnt"], "prob": round(r["prob"], 6)}
            if engine.tokenizer is not None:
                row["token"] = engine.decode([token])
            rows.append(row)
        results.append({"context": given} | {k: v for k, v in result.items() if k != "result_by_token_id"}
                       | {"top": rows, "num_distinct": len(by_token)})

    def table() -> str:
        parts = []
        for r, (_, query) in zip(results, queries):
            parts.append(f"context {_shown(query)}: {r['num_distinct']:,} distinct next token(s)")
            parts.append(_table(["token_id", "token", "cont_cnt", "prob"],
                                [[t["token_id"], repr(t.get("token", "")), f"{t['cont_cnt']:,}", t["prob"]]
                                 for t in r["top"]]))
        return "\n\n".join(parts)

    _emit(args, results[0] if len(results) == 1 else results, table, records=results, to_file=True)
    return 0


def cmd_creativity(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    queries = _queries(args, "text")
    results = []
    for given, query in queries:
        ids = _ids_of(engine, query)
        rs = engine.creativity(ids)["rs"]
        results.append({"text": given, "token_ids": ids, "rs": rs,
                        "longest": max((r - l for l, r in enumerate(rs)), default=0)})
    rows = [[r["longest"], len(r["token_ids"]), _shown(q)] for r, (_, q) in zip(results, queries)]
    _emit(args, results[0] if len(results) == 1 else results,
          lambda: _table(["longest match", "tokens", "text"], rows), records=results, to_file=True)
    return 0


def cmd_attribute(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    queries = _queries(args, "text")
    delim_ids = _parse_ids(args.delim_ids, "--delim-ids") if args.delim_ids else []
    bow_ids = _parse_ids(args.bow_ids, "--bow-ids") if args.bow_ids is not None else None
    results = []
    for given, query in queries:
        ids = _ids_of(engine, query)
        spans = engine.attribute(ids, delim_ids, args.min_len, args.max_cnt, bow_ids)["spans"]
        for span in spans:
            span["docs"] = span["docs"][: args.max_docs]
            if engine.tokenizer is not None:
                span["text"] = engine.decode(ids[span["l"]:span["r"]])
        results.append({"text": given, "token_ids": ids, "spans": spans})

    def table() -> str:
        parts = []
        for r, (_, query) in zip(results, queries):
            parts.append(f"text {_shown(query)}: {len(r['spans'])} span(s)")
            parts.append(_table(["l", "r", "count", "span"],
                                [[s["l"], s["r"], f"{s['count']:,}",
                                  repr(s["text"]) if "text" in s else _shown(r["token_ids"][s["l"]:s["r"]])]
                                 for s in r["spans"]]))
        return "\n\n".join(parts)

    _emit(args, results[0] if len(results) == 1 else results, table, records=results, to_file=True)
    return 0


def cmd_search(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    results = []
    for given, query in _queries(args):
        ids = _ids_of(engine, query)
        result = engine.search_docs(ids, maxnum=args.maxnum, max_disp_len=args.max_disp_len, seed=args.seed)
        results.append((ids, {"query": given} | result))

    def table() -> str:
        color = sys.stdout.isatty() and args.output is None and not os.environ.get("NO_COLOR")
        mark = ("\033[1;31m", "\033[0m") if color else ("[[", "]]")
        out = io.StringIO()
        for ids, result in results:
            print(f"{result['cnt']:,} occurrence(s) of {result['query']!r}; showing {len(result['documents'])}",
                  file=out)
            for doc in result["documents"]:
                tokens, at = doc["token_ids"], doc["needle_offset"]
                parts = [tokens[:at], tokens[at:at + len(ids)], tokens[at + len(ids):]]
                if engine.tokenizer is not None:
                    before, match, after = (engine.decode(p) for p in parts)
                else:
                    before, match, after = (" ".join(map(str, p)) for p in parts)
                print(f"\n--- document {doc['doc_ix']} (shard {doc['shard']}, {doc['doc_len']:,} tokens) "
                      f"{doc['metadata'].strip()}", file=out)
                print(f"{before}{mark[0]}{match}{mark[1]}{after}", file=out)
        return out.getvalue().rstrip("\n")

    plain = [r for _, r in results]
    _emit(args, plain[0] if len(plain) == 1 else plain, table, records=plain, to_file=True)
    return 0


def _tokenizer_line(info: Dict[str, Any]) -> str:
    tok = info["tokenizer"]
    if tok is not None:
        return tok.get("name", "?")
    if info["token_width"] == 1 and info["vocab_size"] <= 256:
        return "none (UTF-8 bytes)"
    return "none (pre-tokenized ids)"


def cmd_info(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    info = engine.info()

    def table() -> str:
        lines = [
            f"index         {info['path']}",
            f"documents     {info['num_documents']:,}",
            f"tokens        {info['num_tokens']:,} (u{8 * info['token_width']}, separators included)",
            f"vocabulary    {info['vocab_size']:,} ids, eos {info['eos_token_id']}",
            f"tokenizer     {_tokenizer_line(info)}",
            f"manifest      {'yes' if info['has_manifest'] else 'no (infini-gram index)'}",
        ]
        lines += [f"shard {s['shard']:<7} {s['num_tokens']:,} tokens, {s['num_documents']:,} documents, "
                  f"{s['ptr_size']}-byte pointers{', metadata' if s['has_metadata'] else ''}" for s in info["shards"]]
        return "\n".join(lines)

    _emit(args, info, table, to_file=True)
    return 0


def cmd_verify(args) -> int:
    _check_print_output(args)
    engine = _open(args)
    report = engine.verify()

    def table() -> str:
        lines = [f"checked {report['checksums_checked']} checksums, {report['pointers_checked']:,} pointers, "
                 f"{report['pairs_checked']:,} suffix pairs"]
        lines += [f"PROBLEM {problem}" for problem in report["problems"]]
        lines.append("OK" if report["ok"] else f"{len(report['problems'])} problem(s)")
        return "\n".join(lines)

    _emit(args, report, table, to_file=True)
    return 0 if report["ok"] else 1


def cmd_add_accelerator(args) -> int:
    from .accel import add_accelerator

    for path in add_accelerator(args.index, rate=args.rate, key_bytes=args.key_bytes, token_width=args.token_width):
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.output, rebuild=args.rebuild)
    return 0


# Commands other packages add to `anygram`: each entry point of this group names a module
# (or object) with `add_arguments(parser)`, `run(args) -> int` and optionally `HELP`. The
# dependency points from the plugin to anygram: anygram imports no plugin by name.
COMMANDS_GROUP = "anygram.commands"

# Commands shipped as separate packages of this project: (help, what to install). Without
# the package the command still exists and says what to install.
OPTIONAL_COMMANDS = {
    "serve": (
        "HTTP query service (infini-gram's API + /v1) and web page",
        "the HTTP service is the separate package anygram-server; install it with "
        "`pip install ./server` from a checkout of anygram (`make install` does)",
    ),
}


def command_entry_points() -> Dict[str, importlib.metadata.EntryPoint]:
    """The installed packages' `anygram` commands, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=COMMANDS_GROUP)}


def cmd_command_missing(args) -> int:
    print(f"anygram {args.command}: error: {args.install_hint}", file=sys.stderr)
    return 2


def _add_plugin_commands(sub) -> None:
    found = command_entry_points()
    for name in sorted(set(found) | set(OPTIONAL_COMMANDS)):
        if name in sub.choices:
            continue  # a plugin cannot replace a built-in command
        help_text, install_hint = OPTIONAL_COMMANDS.get(name, (None, None))
        command = None
        if name in found:
            try:
                command = found[name].load()
            except ImportError:
                command = None  # registered but not importable (a broken install): say what to install
        s = sub.add_parser(name, help=help_text or getattr(command, "HELP", None))
        if command is None:
            s.add_argument("rest", nargs=argparse.REMAINDER, help="the command's arguments (its package is missing)")
            s.set_defaults(func=cmd_command_missing,
                           install_hint=install_hint or f"its package (entry point {found[name].value}) cannot be imported")
            continue
        command.add_arguments(s)
        s.set_defaults(func=command.run)


def cmd_eval_lm(args) -> int:
    import numpy as np

    from . import evallm
    from .atomic import write_json_atomic
    from .paths import check_outputs

    report_flag = _flag(args, "output", "--output")
    check_outputs({report_flag: args.output, "--save-lm-logprobs": args.save_lm_logprobs},
                  inputs={"--tokens": args.tokens, "--offsets": args.offsets, "--jsonl": args.jsonl,
                          "--lm-logprobs": args.lm_logprobs},
                  index_dirs={"--index": args.index})
    engine = _open(args)
    if args.jsonl is not None:
        if args.tokens is not None:
            raise InvalidQueryError("give documents as --jsonl or as --tokens/--offsets, not both")
        docs = evallm.load_jsonl(args.jsonl, engine, args.text_field)
    elif args.tokens is not None and args.offsets is not None:
        docs = evallm.load_documents(args.tokens, args.offsets)
    else:
        raise InvalidQueryError("give the documents: --tokens and --offsets (.npy), or --jsonl")
    if args.limit_docs is not None:
        if args.limit_docs < 1:
            raise InvalidQueryError(f"--limit-docs must be a positive number of documents, got {args.limit_docs}")
        docs = docs[: args.limit_docs]
    if args.lm_logprobs is not None:
        lm_source = f"--lm-logprobs {args.lm_logprobs}"
        try:
            lm = np.load(args.lm_logprobs, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InvalidQueryError(f"{lm_source}: not a readable .npy array ({e})") from None
        if args.limit_docs is not None and lm.ndim == 1:
            lm = lm[: sum(len(d) for d in docs)]
    elif args.model is not None:
        lm_source = f"--model {args.model}"
        bos = args.bos_token_id if args.bos_token_id is not None else engine.eos_token_id
        lm = evallm.model_logprobs(args.model, docs, bos, window=args.window, stride=args.stride)
        if args.save_lm_logprobs:
            np.save(args.save_lm_logprobs, lm.astype(np.float32))
    else:
        raise InvalidQueryError("give the model's per-token log-probs (--lm-logprobs .npy) or --model")
    report = evallm.evaluate(engine, docs, np.asarray(lm), split=args.split, context=args.context,
                             max_support=args.max_support, lm_source=lm_source)
    if args.output:
        write_json_atomic(args.output, report, indent=2)
    _emit(args_printing_to_stdout(args), report, lambda: evallm.format_report(report))
    return 0


def args_printing_to_stdout(args) -> argparse.Namespace:
    """The arguments for printing where -o names a file of its own (the printed report goes
    to stdout, so its format follows stdout, not -o)."""
    return argparse.Namespace(format=args.format, output=None)


def cmd_contamination(args) -> int:
    from . import scan
    from .paths import check_outputs, progress_file

    out_flag = _flag(args, "output", "--output")
    check_outputs({out_flag: args.output, f"{out_flag}'s progress file": args.output and progress_file(args.output),
                   "--summary": args.summary, "--html": args.html},
                  inputs={"--eval": args.eval}, index_dirs={"--index": args.index})
    engine = _open(args)
    summary = scan.run_contamination(
        engine, args.eval, out=args.output, min_len=args.min_len, threshold=args.threshold, fields=args.field,
        k=args.k, id_field=args.id_field, batch_size=args.batch_size, restart=args.restart,
        progress=not args.quiet and sys.stderr.isatty(), ray=args.ray)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
    if args.html:
        with open(args.html, "w") as f:
            f.write(scan.contamination_html(summary, engine, args.eval, args.field))
    _emit(args_printing_to_stdout(args), summary, lambda: scan.contamination_table(summary))
    return 0


def cmd_dedup(args) -> int:
    from . import scan
    from .engine import Engine
    from .paths import check_outputs, progress_file

    if args.output is None:
        raise InvalidArgumentError("give -o/--output: the file for the removed ranges (JSONL)")
    out_flag = _flag(args, "output", "--output")
    check_outputs({out_flag: args.output, f"{out_flag}' progress file": progress_file(args.output),
                   "--write": args.write, "--summary": args.summary},
                  index_dirs={"--index": args.index, "--against": args.against})
    engine = _open(args)
    against = Engine.open(args.against) if args.against else None
    summary = scan.run_dedup(engine, args.output, min_len=args.min_len, against=against, write=args.write,
                             split=args.split, token_ids=args.token_ids, restart=args.restart,
                             method=args.method, progress=not args.quiet and sys.stderr.isatty(), ray=args.ray)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2)
    _emit(args_printing_to_stdout(args), summary, lambda: scan.dedup_table(summary))
    return 0


def cmd_completion(args) -> int:
    print(completion_script(parser(), args.shell))
    return 0


def completion_script(p: argparse.ArgumentParser, shell: str) -> str:
    """A bash completion function for ``anygram``, made from the parser itself (zsh loads
    it through bashcompinit): subcommands, then each one's flags; files elsewhere."""
    commands = _subcommands(p)
    cases = []
    for name, sp in commands.items():
        flags = sorted(o for a in sp._actions if a.help != argparse.SUPPRESS for o in a.option_strings)
        cases.append(f'        {name}) opts="{" ".join(flags)}" ;;')
    script = f"""# anygram shell completion: eval "$(anygram completion {shell})"
_anygram() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmd="" opts="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -*) ;; *) cmd=${{COMP_WORDS[i]}}; break ;; esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{' '.join(commands)} --help --version" -- "$cur"))
        return
    fi
    case $cmd in
{chr(10).join(cases)}
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o default -F _anygram anygram"""
    if shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script


def _subcommands(p: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", "-i", required=True, help="index directory")
    p.add_argument("--tokenizer", help="tokenizer.json (only for indexes without a manifest, or to check)")
    p.add_argument("--token-width", type=int, choices=[1, 2, 4], help="for indexes without a manifest")
    p.add_argument("--vocab-size", type=int, help="for indexes without a manifest")
    p.add_argument("--eos-token-id", type=int, help="for indexes without a manifest")


def _add_queries(p: argparse.ArgumentParser, what: str) -> None:
    whats = f"{what[:-1]}ies" if what.endswith("y") else f"{what}s"
    p.add_argument("queries", nargs="*", metavar=what.upper(),
                   help=f"{what} text(s), tokenized with the index's tokenizer; '-' reads one {what} a line "
                   "from stdin")
    p.add_argument("--ids", action="append", metavar="IDS",
                   help=f"a {what} as token ids, e.g. 464,2068 (repeat for several)")
    p.add_argument("-f", "--queries-file", metavar="FILE", help=f"read {whats} from FILE, one a line")
    p.add_argument("--as-ids", action="store_true",
                   help=f"the {whats} of arguments, -f and stdin are token ids (464,2068 or 464 2068), not text")
    p.add_argument("--verbatim", action="store_true",
                   help="tokenize text as it is (default: as infini-gram's service does, with a leading "
                   "space for GPT-2/OLMo/NeoX-style tokenizers)")


def _add_printed_output(p: argparse.ArgumentParser, old_json_switch: bool = False) -> None:
    _add_output(p, "write the results to this file instead of stdout")
    _add_format(p, old_json_switch)


def _add_ray(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                   help=f"{what} as Ray tasks on a cluster (the anygram[ray] extra): ADDRESS (ray://..., "
                        "HOST:PORT, auto) or, alone, the one Ray finds (RAY_ADDRESS) or starts; every node must "
                        "see the paths (a shared filesystem)")


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="anygram", description="Exact n-gram and ∞-gram statistics over corpora.")
    p.add_argument("-V", "--version", action="version", version=f"anygram {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build an index from JSONL, Parquet, text or .npy files")
    b.add_argument("input", nargs="+", help="files or directories")
    _add_output(b, "index directory to create, or an object storage URL (s3://bucket/prefix, gs://, az://: "
                   "built under --tmp, uploaded with the manifest last)", required=True)
    b.add_argument("--tmp", help="where a build into object storage stages its files (default: the system's "
                   "temporary directory; with --ray, a path every node sees)")
    b.add_argument("--tokenizer", help="HuggingFace tokenizer.json (default: none, UTF-8 bytes)")
    b.add_argument("--shards", default="1",
                   help="number of shards, or 'auto': the fewest whose suffix arrays sort in memory within --mem")
    b.add_argument("--mem", help="memory budget, e.g. 4G or 512M: peak resident memory while suffix arrays "
                   "are built; a shard that does not fit is sorted in parts and merged on disk (default: no limit)")
    b.add_argument("--no-resume", action="store_true",
                   help="start afresh instead of resuming an interrupted build with the same arguments")
    b.add_argument("--token-width", type=int, choices=[1, 2, 4],
                   help="bytes per token id (default: the smallest that holds the vocabulary)")
    b.add_argument("--vocab-size", type=int, help="for pre-tokenized input (default: the tokenizer's)")
    b.add_argument("--eos-token-id", type=int,
                   help="the end-of-text id (default: the tokenizer's, else the separator)")
    b.add_argument("--text-field", default="text", help="JSONL field or Parquet column holding the text")
    b.add_argument("--text-mode", choices=["document", "lines"], default="document",
                   help="plain text files: one document per file or per line")
    b.add_argument("--no-metadata", action="store_true", help="do not store per-document metadata")
    b.add_argument("--strict", action="store_true", help="fail on the first unreadable document")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --output")
    b.add_argument("--workers", type=int, default=0, help="threads for sorting (0: all cores)")
    b.add_argument("--accelerator", action="store_true",
                   help="write the search accelerators (accel.N): a few reads a search for an index larger "
                        "than RAM or in object storage; slower on a hot page cache (see `anygram index "
                        "add-accelerator`)")
    _add_ray(b, "sort the shards' suffix arrays")
    _add_format(b)
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_build)

    ix = sub.add_parser("index", help="maintain an existing index")
    ix_sub = ix.add_subparsers(dest="index_command", required=True, help="what to do to the index")
    ac = ix_sub.add_parser("add-accelerator",
                           help="write the search accelerators (accel.N) of an index, infini-gram's included")
    ac.add_argument("--index", "-i", required=True, help="index directory")
    from .accel import DEFAULT_KEY_BYTES, DEFAULT_RATE

    ac.add_argument("--rate", type=int, default=DEFAULT_RATE, help="one key per this many suffix-array ranks")
    ac.add_argument("--key-bytes", type=int, default=DEFAULT_KEY_BYTES,
                    help="bytes of each suffix kept in a key (1..255)")
    ac.add_argument("--token-width", type=int, choices=[1, 2, 4], help="for indexes without a manifest")
    ac.set_defaults(func=cmd_add_accelerator)

    c = sub.add_parser("count", help="occurrences of n-grams")
    _add_index(c)
    _add_queries(c, "query")
    _add_printed_output(c)
    c.set_defaults(func=cmd_count)

    pr = sub.add_parser("prob", help="P(next | context): n-gram with -n, else ∞-gram")
    _add_index(pr)
    _add_queries(pr, "context")
    pr.add_argument("--next", help="the next token as text (must be one token)")
    pr.add_argument("--next-id", type=int, help="the next token as an id")
    pr.add_argument("-n", type=int, help="n-gram order (default: ∞-gram)")
    _add_printed_output(pr)
    pr.set_defaults(func=cmd_prob)

    nt = sub.add_parser("ntd", help="next-token distribution: n-gram with -n, else ∞-gram")
    _add_index(nt)
    _add_queries(nt, "context")
    nt.add_argument("-n", type=int, help="n-gram order (default: ∞-gram)")
    nt.add_argument("--max-support", type=int, default=1000,
                    help="occurrences counted exactly; beyond, sampled (as infini-gram)")
    nt.add_argument("--top", type=int, default=10, help="show this many of the most frequent tokens")
    _add_printed_output(nt)
    nt.set_defaults(func=cmd_ntd)

    cr = sub.add_parser("creativity", help="where the longest occurring n-gram from each token of a text ends")
    _add_index(cr)
    _add_queries(cr, "text")
    _add_printed_output(cr)
    cr.set_defaults(func=cmd_creativity)

    at = sub.add_parser("attribute", help="the rare spans of a text and where they occur (infini-gram's attribute)")
    _add_index(at)
    _add_queries(at, "text")
    at.add_argument("--min-len", type=int, default=1, help="shortest span kept (tokens)")
    at.add_argument("--max-cnt", type=int, default=10, help="most occurrences a kept span may have")
    at.add_argument("--delim-ids", help="token ids that end a span (comma or space separated)")
    at.add_argument("--bow-ids", help="token ids that begin a word: spans start and end at one")
    at.add_argument("--max-docs", type=int, default=10, help="occurrences listed per span")
    _add_printed_output(at)
    at.set_defaults(func=cmd_attribute)

    se = sub.add_parser("search", help="documents where an n-gram occurs, the match highlighted")
    _add_index(se)
    _add_queries(se, "query")
    se.add_argument("--maxnum", type=int, default=5, help="documents to show (drawn at random beyond)")
    se.add_argument("--max-disp-len", type=int, default=80, help="tokens shown around each match")
    se.add_argument("--seed", type=int, help="make the random draw repeatable (default: random)")
    _add_printed_output(se, old_json_switch=True)
    se.set_defaults(func=cmd_search)

    i = sub.add_parser("info", help="what is in an index")
    _add_index(i)
    _add_printed_output(i, old_json_switch=True)
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="checksums and structure of every shard")
    _add_index(v)
    _add_printed_output(v)
    v.set_defaults(func=cmd_verify)

    ev = sub.add_parser("eval-lm", help="perplexity of a neural LM alone and mixed with the ∞-gram LM")
    _add_index(ev)
    ev.add_argument("--tokens", help=".npy of the documents' token ids, concatenated")
    ev.add_argument("--offsets", help=".npy of document boundaries (documents + 1 entries)")
    ev.add_argument("--jsonl", help="documents as JSONL text instead (tokenized with the index's tokenizer)")
    ev.add_argument("--text-field", default="text", help="--jsonl: the field holding the text")
    ev.add_argument("--lm-logprobs", help=".npy of the model's log-prob of every token")
    ev.add_argument("--model", help="transformers model name or path (needs torch) instead of --lm-logprobs")
    ev.add_argument("--bos-token-id", type=int, help="token the model sees before a document "
                    "(default: the index's eos)")
    ev.add_argument("--window", type=int, default=512, help="--model: context window")
    ev.add_argument("--stride", type=int, default=255,
                    help="--model: tokens between window starts (the default reproduces ../shared/data/lm_eval)")
    ev.add_argument("--save-lm-logprobs", help="--model: save the computed log-probs here (.npy)")
    ev.add_argument("--split", choices=["alternate", "halves"], default="alternate",
                    help="validation/test documents: even/odd or first/second half")
    ev.add_argument("--context", choices=["doc-start", "empty"], default="doc-start",
                    help="the ∞-gram context of a document's first tokens")
    ev.add_argument("--max-support", type=int, default=1000, help="exact ntd counting limit (accuracy)")
    ev.add_argument("--limit-docs", type=int, help="use only the first N documents (default: all)")
    _add_output(ev, "write the full report (JSON) here", old=["--json"])
    _add_format(ev)
    ev.set_defaults(func=cmd_eval_lm)

    from .scan import DEFAULT_CONTAMINATION_MIN_LEN, DEFAULT_DEDUP_MIN_LEN, DEFAULT_THRESHOLD

    co = sub.add_parser(
        "contamination", help="how much of each example of an eval set occurs verbatim in the corpus",
        description="For each example (a line of --eval), the longest verbatim match with the corpus "
        "starting at each token; its coverage is the fraction of tokens inside matches of at least "
        "--min-len tokens. Writes one JSON line per example to -o/--output, resuming an interrupted run "
        "with the same arguments. Memory: one batch of examples (4 bytes per token of statistics); the "
        "index is read through the page cache.")
    _add_index(co)
    co.add_argument("--eval", required=True, help="eval set: JSONL (plain, .gz, .zst), one example a line")
    co.add_argument("--field", action="append",
                    help="field to score (repeat for several; each is scanned on its own) (default: text)")
    co.add_argument("--id-field", default="id", help="field copied to the output as the example's id")
    co.add_argument("--min-len", type=int, default=DEFAULT_CONTAMINATION_MIN_LEN,
                    help="shortest match that counts, in tokens")
    co.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="contaminated when its coverage is at least this")
    co.add_argument("-k", type=int, default=5, help="occurrences of the longest match to list")
    _add_output(co, "per-example results (JSONL) (default: none, the summary only)", old=["--out"])
    co.add_argument("--summary", help="write the summary as JSON here")
    co.add_argument("--html", help="write an HTML report here")
    co.add_argument("--batch-size", type=int, default=512, help="examples per parallel batch")
    co.add_argument("--restart", action="store_true", help="ignore a previous run's progress at -o/--output")
    _add_ray(co, "scan the batches of examples")
    _add_format(co, old_json_switch=True)
    co.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    co.set_defaults(func=cmd_contamination)

    dd = sub.add_parser(
        "dedup", help="exact-substring dedup: repeated spans (self) or spans of another index (--against)",
        description="Every window of --min-len tokens inside a document that repeats an earlier "
        "position of the corpus (self: the first occurrence in corpus order is kept) or occurs in "
        "--against (cross). Writes the removed token ranges per affected document to -o/--output (JSONL) "
        "and, with --write, the corpus without them. Resumes an interrupted run with the same arguments. "
        "Memory: self, one bit per token of the index plus 16 bytes per removed range (and, with several "
        "shards or with --against, 16 bytes per copy of the window being merged); the "
        "indexes are read through the page cache.")
    _add_index(dd)
    dd.add_argument("--min-len", type=int, default=DEFAULT_DEDUP_MIN_LEN, help="shortest span removed, in tokens")
    dd.add_argument("--against", help="another index (same tokenizer): remove spans that occur in it")
    dd.add_argument("--method", choices=["auto", "merge", "matching"], default="auto",
                    help="cross dedup: merge both suffix arrays (cost ~ both indexes) or matching statistics "
                    "of each document against --against (~30x dearer per token of this index); auto picks "
                    "the cheaper")
    _add_output(dd, "removed ranges per affected document (JSONL); required", old=["--ranges"])
    dd.add_argument("--write", help="write the cleaned corpus here (JSONL; .zst or .gz compress)")
    dd.add_argument("--split", action="store_true",
                    help="with --write: each kept piece of a document on its own line (no new spans at cuts)")
    dd.add_argument("--token-ids", action="store_true",
                    help="with --write: token ids, not decoded text (lossless where cuts split characters)")
    dd.add_argument("--summary", help="write the summary as JSON here")
    dd.add_argument("--restart", action="store_true", help="ignore a previous run's progress at -o/--output")
    _add_ray(dd, "self dedup a key part per task, cross dedup a shard per task")
    _add_format(dd)
    dd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    dd.set_defaults(func=cmd_dedup)

    d = sub.add_parser("demo", help="build a demo index of Python's standard library and query it")
    _add_output(d, "index directory", default="demo-index")
    d.add_argument("--rebuild", action="store_true", help="build the index again even if it exists")
    d.set_defaults(func=cmd_demo)

    co = sub.add_parser("completion", help="print a shell completion script: eval \"$(anygram completion bash)\"")
    co.add_argument("shell", choices=["bash", "zsh"], help="the shell")
    co.set_defaults(func=cmd_completion)

    _add_plugin_commands(sub)
    return p


def _check_flags(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """A flag the command does not know is an error of that command, with the closest flag
    it has (argparse would show the top-level usage, or first complain of a missing
    required flag, the mistyped one)."""
    commands = _subcommands(p)
    for at, word in enumerate(argv):
        if word in commands:
            break
        if not word.startswith("-"):
            return  # argparse reports an unknown command, with a suggestion (_Parser.error)
    else:
        return
    command = commands[word]
    # A group (`anygram index ...`): its own subcommand's flags are the ones to check.
    while _subcommands(command):
        nested = _subcommands(command)
        following = [i for i in range(at + 1, len(argv)) if argv[i] in nested]
        if not following:
            return  # argparse reports the missing or unknown subcommand
        at = following[0]
        command = nested[argv[at]]
    if command.get_default("func") is cmd_command_missing:
        return
    known = command._option_string_actions
    visible = [o for a in command._actions if a.help != argparse.SUPPRESS for o in a.option_strings]
    for arg in argv[at + 1:]:
        if arg == "--":
            break
        if not arg.startswith("-") or arg == STDIN or re.fullmatch(r"-\d+(\.\d*)?", arg):
            continue
        flag = arg.split("=", 1)[0]
        if flag in known or (not flag.startswith("--") and flag[:2] in known):
            continue
        if flag.startswith("--") and sum(o.startswith(flag) for o in known if o.startswith("--")) == 1:
            continue  # an unambiguous abbreviation, as argparse allows
        command.error(f"unrecognized argument {flag}{did_you_mean(flag, visible)}")


# Python's names for arguments in messages the library raises, and the CLI's.
# How check_output names build_index's arguments on the command line.
_BUILD_FLAGS = {"output": "--output", "input": "input", "overwrite": "--overwrite"}

_PYTHON_TO_CLI = [
    ("overwrite=True", "--overwrite"),
    ("strict=True", "--strict"),
    ("resume=False", "--no-resume"),
    ("fields=[...]", "--field"),
    ("restart=True", "--restart"),
    ("text_field=...", "--text-field"),
    # The core names values; the command line adds the flag that sets them.
    ("raise the memory budget", "raise the memory budget (--mem)"),
]


def cli_message(command: str, message: str) -> str:
    """A library error as the command line says it: its flags instead of Python's
    arguments, and no advice to run the command being run."""
    for python, cli in _PYTHON_TO_CLI:
        message = message.replace(python, cli)
    if command == "verify":
        message = message.replace("; run `anygram verify` or rebuild the index", "; rebuild the index")
    return message


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    _check_flags(p, argv)
    args, unknown = p.parse_known_args(argv)
    # Only a command without its package takes arguments it does not know (to say what to install).
    if unknown and args.func is not cmd_command_missing:
        _subcommands(p)[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except AnygramError as e:
        print(f"anygram {args.command}: error: {cli_message(args.command, str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `anygram ... | head` is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
