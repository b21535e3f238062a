#!/usr/bin/env python3
"""Builds into object storage: `anygram build -o s3://...` (s3s-fs on 127.0.0.1) beside the
same build into a directory, in one run, and the upload alone (the finished directory
published to a fresh prefix: `_anygram.publish_index`), as MB/s.

    PYTHONPATH=python:server /work/main/.venv/bin/python bench/bench_upload.py --tokens 140000000

The corpus: ``--tokens`` random u16 ids (vocabulary 50,000) in documents of 200-2,000
tokens, written once as .npy under ``--work``; 2 shards, accelerators on. The objects are
checked byte for byte against the directory build (all but the manifest). Results:
bench/results/<date>-upload.json.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from s3_server import s3_env, start_s3  # noqa: E402


def cli(*args, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "anygram.cli", *map(str, args)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=140_000_000)
    p.add_argument("--work", default=os.path.join(HERE, "results", "tmp", "upload"))
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    corpus = os.path.join(args.work, f"corpus-{args.tokens}.npy")
    if not os.path.exists(corpus):
        rng = np.random.default_rng(16)
        np.save(corpus, rng.integers(0, 50_000, args.tokens, dtype=np.uint16))
        lengths = rng.integers(200, 2_000, args.tokens // 200)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        starts = starts[starts < args.tokens]
        np.save(corpus[:-4] + ".offsets.npy", np.append(starts, args.tokens).astype(np.int64))
    root = os.path.join(args.work, "s3root")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "bench"))
    local = os.path.join(args.work, "local")
    shutil.rmtree(local, ignore_errors=True)
    stage = os.path.join(args.work, "stage")
    os.makedirs(stage, exist_ok=True)
    server, port = start_s3(root)
    env = {**os.environ, **s3_env(port)}
    common = ["--token-width", 2, "--vocab-size", 50_001, "--shards", 2, "--accelerator", "-q"]
    try:
        to_dir = cli("build", corpus, "-o", local, *common, env=env)
        to_s3 = cli("build", corpus, "-o", "s3://bench/idx", "--tmp", stage, *common, env=env)
        sizes = {n: os.path.getsize(os.path.join(local, n)) for n in os.listdir(local)}
        for name in sizes:
            if name != "anygram.json":
                assert filecmp.cmp(os.path.join(local, name), os.path.join(root, "bench", "idx", name),
                                   shallow=False), name
        code = ("import sys, time; from anygram import _anygram; t = time.perf_counter(); "
                "_anygram.publish_index(sys.argv[1], 's3://bench/copy', False); print(time.perf_counter() - t)")
        upload = float(subprocess.run([sys.executable, "-c", code, local], check=True, env=env,
                                      capture_output=True, text=True).stdout)
    finally:
        server.terminate()
        server.wait(10)
    total = sum(sizes.values())
    result = {
        "date": datetime.date.today().isoformat(), "tokens": args.tokens, "index_bytes": total,
        "files": len(sizes), "largest_file_bytes": max(sizes.values()),
        "build_to_directory_s": round(to_dir, 2), "build_to_s3_s": round(to_s3, 2),
        "ratio": round(to_s3 / to_dir, 3), "upload_alone_s": round(upload, 2),
        "upload_MB_per_s": round(total / upload / 1e6, 1),
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    with open(os.path.join(args.out, f"{result['date']}-upload.json"), "w") as f:
        json.dump(result, f, indent=1)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(local, ignore_errors=True)


if __name__ == "__main__":
    main()
