"""The ``anygram`` command line: build, query, inspect and verify indexes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import List, Optional, Sequence

from .errors import AnygramError, InvalidQueryError


def _open(args):
    from .engine import Engine

    return Engine.open(args.index, tokenizer=getattr(args, "tokenizer", None),
                       token_width=getattr(args, "token_width", None),
                       vocab_size=getattr(args, "vocab_size", None),
                       eos_token_id=getattr(args, "eos_token_id", None))


def _ids(text: Optional[str], ids: Optional[str]) -> object:
    if ids is not None:
        try:
            return [int(t) for t in ids.replace(",", " ").split()]
        except ValueError:
            raise InvalidQueryError(f"--ids must be integers separated by commas or spaces, got {ids!r}")
    if text is None:
        raise InvalidQueryError("give a query text or --ids")
    return text


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def cmd_build(args) -> int:
    from .builder import CLI_WORDS, build_index, check_output

    check_output(args.output, [os.path.abspath(i) for i in args.input], args.overwrite, CLI_WORDS)
    report = build_index(
        args.input, args.output, tokenizer=args.tokenizer, shards=_shards_arg(args.shards),
        token_width=args.token_width, vocab_size=args.vocab_size, eos_token_id=args.eos_token_id,
        text_field=args.text_field, text_mode=args.text_mode, metadata=not args.no_metadata,
        strict=args.strict, overwrite=args.overwrite, workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(), mem=args.mem, resume=not args.no_resume,
        accelerator=not args.no_accelerator,
    )
    print(report.summary())
    return 0


def _shards_arg(value: str):
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(f"--shards must be a positive integer or 'auto', not {value!r}") from None


def cmd_count(args) -> int:
    engine = _open(args)
    query = _ids(args.query, args.ids)
    _print({"count": engine.count(query), "token_ids": query if isinstance(query, list) else engine.tokenize(query)})
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
    engine = _open(args)
    _print(engine.prob(_ids(args.context, args.ids), _next_token(engine, args), n=args.n))
    return 0


def cmd_ntd(args) -> int:
    engine = _open(args)
    result = engine.ntd(_ids(args.context, args.ids), n=args.n, max_support=args.max_support)
    top = sorted(result["result_by_token_id"].items(), key=lambda kv: -kv[1]["cont_cnt"])[: args.top]
    rows = []
    for token, r in top:
        row = {"token_id": token, "cont_cnt": r["cont_cnt"], "prob": round(r["prob"], 6)}
        if engine.tokenizer is not None:
            row["token"] = engine.decode([token])
        rows.append(row)
    _print({k: v for k, v in result.items() if k != "result_by_token_id"} | {"top": rows,
           "num_distinct": len(result["result_by_token_id"])})
    return 0


def cmd_search(args) -> int:
    engine = _open(args)
    query = _ids(args.query, args.ids)
    ids = query if isinstance(query, list) else engine.tokenize(query)
    result = engine.search_docs(ids, maxnum=args.maxnum, max_disp_len=args.max_disp_len, seed=args.seed)
    if args.json:
        _print(result)
        return 0
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    mark = ("\033[1;31m", "\033[0m") if color else ("[[", "]]")
    shown = len(result["documents"])
    print(f"{result['cnt']:,} occurrence(s); showing {shown}")
    for doc in result["documents"]:
        tokens, at = doc["token_ids"], doc["needle_offset"]
        parts = [tokens[:at], tokens[at:at + len(ids)], tokens[at + len(ids):]]
        if engine.tokenizer is not None:
            before, match, after = (engine.decode(p) for p in parts)
        else:
            before, match, after = (" ".join(map(str, p)) for p in parts)
        print(f"\n--- document {doc['doc_ix']} (shard {doc['shard']}, {doc['doc_len']:,} tokens) "
              f"{doc['metadata'].strip()}")
        print(f"{before}{mark[0]}{match}{mark[1]}{after}")
    return 0


def cmd_info(args) -> int:
    engine = _open(args)
    info = engine.info()
    if args.json:
        _print(info)
        return 0
    tok = info["tokenizer"]
    print(f"index         {info['path']}")
    print(f"documents     {info['num_documents']:,}")
    print(f"tokens        {info['num_tokens']:,} (u{8 * info['token_width']}, separators included)")
    print(f"vocabulary    {info['vocab_size']:,} ids, eos {info['eos_token_id']}")
    print(f"tokenizer     {'UTF-8 bytes' if tok is None and info['token_width'] == 1 else (tok or {}).get('name', 'none')}")
    print(f"manifest      {'yes' if info['has_manifest'] else 'no (infini-gram index)'}")
    for s in info["shards"]:
        print(f"shard {s['shard']:<7} {s['num_tokens']:,} tokens, {s['num_documents']:,} documents, "
              f"{s['ptr_size']}-byte pointers{', metadata' if s['has_metadata'] else ''}")
    return 0


def cmd_verify(args) -> int:
    engine = _open(args)
    report = engine.verify()
    print(f"checked {report['checksums_checked']} checksums, {report['pointers_checked']:,} pointers, "
          f"{report['pairs_checked']:,} suffix pairs")
    for problem in report["problems"]:
        print(f"PROBLEM {problem}")
    print("OK" if report["ok"] else f"{len(report['problems'])} problem(s)")
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


def cmd_serve(args) -> int:
    from anygram_server.cli import run

    return run(args)


def cmd_serve_missing(args) -> int:
    print("anygram serve: error: the HTTP service is the separate package anygram-server; install it with "
          "`pip install ./server` from a checkout of anygram (`make install` does)", file=sys.stderr)
    return 2


def _add_serve(sub) -> None:
    s = sub.add_parser("serve", help="HTTP query service (infini-gram's API + /v1) and web page")
    # The flags belong to the server package; it is optional, so look for it without importing it.
    if importlib.util.find_spec("anygram_server") is None:
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=cmd_serve_missing)
        return
    from anygram_server.cli import add_arguments

    add_arguments(s)
    s.set_defaults(func=cmd_serve)


def cmd_eval_lm(args) -> int:
    import numpy as np

    from . import evallm
    from .paths import check_outputs

    check_outputs({"--json": args.json, "--save-lm-logprobs": args.save_lm_logprobs},
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
    print(evallm.format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def cmd_contamination(args) -> int:
    from . import scan
    from .paths import check_outputs, progress_file

    check_outputs({"--out": args.out, "--out's progress file": args.out and progress_file(args.out),
                   "--summary": args.summary, "--html": args.html},
                  inputs={"--eval": args.eval}, index_dirs={"--index": args.index})
    engine = _open(args)
    summary = scan.run_contamination(
        engine, args.eval, out=args.out, min_len=args.min_len, threshold=args.threshold, fields=args.field,
        k=args.k, id_field=args.id_field, batch_size=args.batch_size, restart=args.restart,
        progress=not args.quiet and sys.stderr.isatty())
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
    if args.html:
        with open(args.html, "w") as f:
            f.write(scan.contamination_html(summary, engine, args.eval, args.field))
    if args.json:
        _print(summary)
    else:
        print(scan.contamination_table(summary))
    return 0


def cmd_dedup(args) -> int:
    from . import scan
    from .engine import Engine
    from .paths import check_outputs, progress_file

    check_outputs({"--ranges": args.ranges, "--ranges' progress file": progress_file(args.ranges),
                   "--write": args.write, "--summary": args.summary},
                  index_dirs={"--index": args.index, "--against": args.against})
    engine = _open(args)
    against = Engine.open(args.against) if args.against else None
    summary = scan.run_dedup(engine, args.ranges, min_len=args.min_len, against=against, write=args.write,
                             split=args.split, token_ids=args.token_ids, restart=args.restart,
                             method=args.method, progress=not args.quiet and sys.stderr.isatty())
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2)
    _print(summary)
    return 0


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", "-i", required=True, help="index directory")
    p.add_argument("--tokenizer", help="tokenizer.json (only for indexes without a manifest, or to check)")
    p.add_argument("--token-width", type=int, choices=[1, 2, 4], help="for indexes without a manifest")
    p.add_argument("--vocab-size", type=int, help="for indexes without a manifest")
    p.add_argument("--eos-token-id", type=int, help="for indexes without a manifest")


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="anygram", description="Exact n-gram and ∞-gram statistics over corpora.")
    p.add_argument("--version", action="version", version=f"anygram {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build an index from JSONL, Parquet, text or .npy files")
    b.add_argument("input", nargs="+", help="files or directories")
    b.add_argument("--output", "-o", required=True, help="index directory to create")
    b.add_argument("--tokenizer", help="HuggingFace tokenizer.json; default: UTF-8 bytes")
    b.add_argument("--shards", default="1",
                   help="number of shards, or 'auto': the fewest whose suffix arrays sort in memory within --mem")
    b.add_argument("--mem", help="memory budget, e.g. 4G or 512M: peak resident memory while suffix arrays "
                   "are built; a shard that does not fit is sorted in parts and merged on disk (default: no limit)")
    b.add_argument("--no-resume", action="store_true",
                   help="start afresh instead of resuming an interrupted build with the same arguments")
    b.add_argument("--token-width", type=int, choices=[1, 2, 4])
    b.add_argument("--vocab-size", type=int, help="for pre-tokenized input")
    b.add_argument("--eos-token-id", type=int)
    b.add_argument("--text-field", default="text", help="JSONL field holding the text")
    b.add_argument("--text-mode", choices=["document", "lines"], default="document",
                   help="plain text files: one document per file or per line")
    b.add_argument("--no-metadata", action="store_true", help="do not store per-document metadata")
    b.add_argument("--strict", action="store_true", help="fail on the first unreadable document")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index at --output")
    b.add_argument("--workers", type=int, default=0, help="threads for sorting (0: all cores)")
    b.add_argument("--no-accelerator", action="store_true",
                   help="do not write the search accelerators (accel.N files; see `anygram index add-accelerator`)")
    b.add_argument("--quiet", "-q", action="store_true")
    b.set_defaults(func=cmd_build)

    ix = sub.add_parser("index", help="maintain an existing index")
    ix_sub = ix.add_subparsers(dest="index_command", required=True)
    ac = ix_sub.add_parser("add-accelerator",
                           help="write the search accelerators (accel.N) of an index, infini-gram's included")
    ac.add_argument("--index", "-i", required=True, help="index directory")
    ac.add_argument("--rate", type=int, default=64, help="one key per this many suffix-array ranks")
    ac.add_argument("--key-bytes", type=int, default=32, help="bytes of each suffix kept in a key (1..255)")
    ac.add_argument("--token-width", type=int, choices=[1, 2, 4], help="for indexes without a manifest")
    ac.set_defaults(func=cmd_add_accelerator)

    c = sub.add_parser("count", help="occurrences of an n-gram")
    _add_index(c)
    c.add_argument("query", nargs="?", help="text (tokenized with the index's tokenizer)")
    c.add_argument("--ids", help="token ids instead of text, e.g. 464,2068")
    c.set_defaults(func=cmd_count)

    pr = sub.add_parser("prob", help="P(next | context): n-gram with -n, else ∞-gram")
    _add_index(pr)
    pr.add_argument("context", nargs="?")
    pr.add_argument("--ids", help="context token ids")
    pr.add_argument("--next", help="the next token as text (must be one token)")
    pr.add_argument("--next-id", type=int)
    pr.add_argument("-n", type=int, help="n-gram order (default: ∞-gram)")
    pr.set_defaults(func=cmd_prob)

    nt = sub.add_parser("ntd", help="next-token distribution: n-gram with -n, else ∞-gram")
    _add_index(nt)
    nt.add_argument("context", nargs="?")
    nt.add_argument("--ids", help="context token ids")
    nt.add_argument("-n", type=int)
    nt.add_argument("--max-support", type=int, default=1000)
    nt.add_argument("--top", type=int, default=10, help="show the most frequent tokens")
    nt.set_defaults(func=cmd_ntd)

    se = sub.add_parser("search", help="documents where an n-gram occurs, the match highlighted")
    _add_index(se)
    se.add_argument("query", nargs="?", help="text (tokenized with the index's tokenizer)")
    se.add_argument("--ids", help="token ids instead of text")
    se.add_argument("--maxnum", type=int, default=5, help="documents to show (drawn at random beyond)")
    se.add_argument("--max-disp-len", type=int, default=80, help="tokens shown around each match")
    se.add_argument("--seed", type=int, help="make the random draw repeatable")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_search)

    i = sub.add_parser("info", help="what is in an index")
    _add_index(i)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="checksums and structure of every shard")
    _add_index(v)
    v.set_defaults(func=cmd_verify)

    ev = sub.add_parser("eval-lm", help="perplexity of a neural LM alone and mixed with the ∞-gram LM")
    _add_index(ev)
    ev.add_argument("--tokens", help=".npy of the documents' token ids, concatenated")
    ev.add_argument("--offsets", help=".npy of document boundaries (documents + 1 entries)")
    ev.add_argument("--jsonl", help="documents as JSONL text instead (tokenized with the index's tokenizer)")
    ev.add_argument("--text-field", default="text")
    ev.add_argument("--lm-logprobs", help=".npy of the model's log-prob of every token")
    ev.add_argument("--model", help="transformers model name or path (needs torch) instead of --lm-logprobs")
    ev.add_argument("--bos-token-id", type=int, help="token the model sees before a document "
                    "(default: the index's eos)")
    ev.add_argument("--window", type=int, default=512, help="--model: context window")
    ev.add_argument("--stride", type=int, default=255,
                    help="--model: tokens between window starts (the default reproduces ../shared/data/lm_eval)")
    ev.add_argument("--save-lm-logprobs", help="--model: save the computed log-probs here (.npy)")
    ev.add_argument("--split", choices=["alternate", "halves"], default="alternate",
                    help="validation/test documents: even/odd (default) or first/second half")
    ev.add_argument("--context", choices=["doc-start", "empty"], default="doc-start",
                    help="the ∞-gram context of a document's first tokens (default: the document start)")
    ev.add_argument("--max-support", type=int, default=1000, help="exact ntd counting limit (accuracy)")
    ev.add_argument("--limit-docs", type=int, help="use only the first N documents")
    ev.add_argument("--json", help="write the full report here")
    ev.set_defaults(func=cmd_eval_lm)


    from .scan import DEFAULT_CONTAMINATION_MIN_LEN, DEFAULT_DEDUP_MIN_LEN, DEFAULT_THRESHOLD

    co = sub.add_parser(
        "contamination", help="how much of each example of an eval set occurs verbatim in the corpus",
        description="For each example (a line of --eval), the longest verbatim match with the corpus "
        "starting at each token; its coverage is the fraction of tokens inside matches of at least "
        "--min-len tokens. Writes one JSON line per example to --out, resuming an interrupted run with "
        "the same arguments. Memory: one batch of examples (4 bytes per token of statistics); the index "
        "is read through the page cache.")
    _add_index(co)
    co.add_argument("--eval", required=True, help="eval set: JSONL (plain, .gz, .zst), one example a line")
    co.add_argument("--field", action="append",
                    help="field to score (repeat for several; each is scanned on its own); default: text")
    co.add_argument("--id-field", default="id", help="field copied to the output as the example's id")
    co.add_argument("--min-len", type=int, default=DEFAULT_CONTAMINATION_MIN_LEN,
                    help="shortest match that counts, in tokens (default %(default)s)")
    co.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="contaminated when its coverage is at least this (default %(default)s)")
    co.add_argument("-k", type=int, default=5,
                    help="occurrences of the longest match to list (default %(default)s)")
    co.add_argument("--out", help="per-example results (JSONL)")
    co.add_argument("--summary", help="write the summary as JSON here")
    co.add_argument("--html", help="write an HTML report here")
    co.add_argument("--batch-size", type=int, default=512, help="examples per parallel batch")
    co.add_argument("--restart", action="store_true", help="ignore a previous run's progress at --out")
    co.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    co.add_argument("--quiet", "-q", action="store_true")
    co.set_defaults(func=cmd_contamination)

    dd = sub.add_parser(
        "dedup", help="exact-substring dedup: repeated spans (self) or spans of another index (--against)",
        description="Every window of --min-len tokens inside a document that repeats an earlier "
        "position of the corpus (self: the first occurrence in corpus order is kept) or occurs in "
        "--against (cross). Writes the removed token ranges per affected document to --ranges (JSONL) "
        "and, with --write, the corpus without them. Resumes an interrupted run with the same arguments. "
        "Memory: self, one bit per token of the index plus 16 bytes per removed range (and, with several "
        "shards or with --against, 16 bytes per copy of the window being merged); the "
        "indexes are read through the page cache.")
    _add_index(dd)
    dd.add_argument("--min-len", type=int, default=DEFAULT_DEDUP_MIN_LEN,
                    help="shortest span removed, in tokens (default %(default)s)")
    dd.add_argument("--against", help="another index (same tokenizer): remove spans that occur in it")
    dd.add_argument("--method", choices=["auto", "merge", "matching"], default="auto",
                    help="cross dedup: merge both suffix arrays (cost ~ both indexes) or matching statistics "
                    "of each document against --against (~30x dearer per token of this index); auto picks "
                    "the cheaper")
    dd.add_argument("--ranges", required=True, help="removed ranges per affected document (JSONL)")
    dd.add_argument("--write", help="write the cleaned corpus here (JSONL; .zst or .gz compress)")
    dd.add_argument("--split", action="store_true",
                    help="with --write: each kept piece of a document on its own line (no new spans at cuts)")
    dd.add_argument("--token-ids", action="store_true",
                    help="with --write: token ids, not decoded text (lossless where cuts split characters)")
    dd.add_argument("--summary", help="write the summary as JSON here")
    dd.add_argument("--restart", action="store_true", help="ignore a previous run's progress at --ranges")
    dd.add_argument("--quiet", "-q", action="store_true")
    dd.set_defaults(func=cmd_dedup)

    d = sub.add_parser("demo", help="build a demo index of Python's standard library and query it")
    d.add_argument("--output", default="demo-index")
    d.add_argument("--rebuild", action="store_true")
    d.set_defaults(func=cmd_demo)

    _add_serve(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args, unknown = p.parse_known_args(argv)
    # Only `serve` without its package takes arguments it does not know (to say what to install).
    if unknown and args.func is not cmd_serve_missing:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except AnygramError as e:
        print(f"anygram {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `anygram ... | head` is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
