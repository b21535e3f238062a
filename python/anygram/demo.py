"""The built-in demo: index the Python standard library's own sources (present on
every machine with Python, so nothing is downloaded or shipped) at the byte level,
and run example queries."""

from __future__ import annotations

import os
import sysconfig
import tempfile
import time

from .builder import build_index
from .engine import Engine
from .paths import check_replaceable_index

# About 8 MB of source: large enough to be interesting, small enough to build in seconds.
_DEMO_BYTES = 8 << 20


def stdlib_sources(limit_bytes: int = _DEMO_BYTES):
    """Paths of the standard library's .py files (tests excluded), sorted, up to ``limit_bytes``."""
    root = sysconfig.get_paths()["stdlib"]
    chosen, total = [], 0
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "idle_test", "site-packages", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                size = os.path.getsize(path)
                if total + size > limit_bytes:
                    return chosen
                chosen.append(path)
                total += size
    return chosen


def run_demo(output: str = "demo-index", rebuild: bool = False) -> Engine:
    if os.path.lexists(output) and (rebuild or not os.path.isdir(output)):
        # Rebuilding replaces only an index (before a byte of the sources is read).
        check_replaceable_index(output, "output", "rebuild")
    if rebuild or not os.path.isdir(output):
        sources = stdlib_sources()
        with tempfile.TemporaryDirectory() as tmp:
            listing = os.path.join(tmp, "sources.jsonl")
            import json

            with open(listing, "w", encoding="utf-8") as f:
                for path in sources:
                    with open(path, encoding="utf-8", errors="replace") as src:
                        f.write(json.dumps({"text": src.read(), "file": os.path.relpath(path, sysconfig.get_paths()["stdlib"])}) + "\n")
            report = build_index(listing, output, overwrite=True)
        print(report.summary())
    engine = Engine.open(output)
    print(f"\n{engine!r}\n")
    examples = ["def __init__(self", "import os", "raise ValueError(", "return None"]
    for text in examples:
        t0 = time.perf_counter()
        n = engine.count(text)
        us = (time.perf_counter() - t0) * 1e6
        print(f"count({text!r:28}) = {n:>8,}   ({us:.0f} µs)")
    context = "raise ValueError("
    dist = engine.ntd(context, n=None)
    top = sorted(dist["result_by_token_id"].items(), key=lambda kv: -kv[1]["cont_cnt"])[:5]
    shown = ", ".join(f"{bytes([t]).decode('utf-8', 'replace')!r}: {r['prob']:.2f}" for t, r in top)
    print(f"ntd({context!r}) next bytes: {shown}")
    p = engine.prob("import o", ord("s"))
    print(f"prob('s' | 'import o') = {p['prob']:.3f}   (∞-gram, suffix of {p['suffix_len']} tokens, "
          f"{p['cont_cnt']}/{p['prompt_cnt']})")
    print(f"\nTry: anygram count --index {output} 'for i in range('")
    return engine
