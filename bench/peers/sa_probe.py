#!/usr/bin/env python3
"""Run infini-gram's own build_sa step (installed infini_gram.indexing.build_sa ->
rust_indexing make-part/merge/concat) on a hand-made tokenized.0, then compare
table.0 with check_sa.brute_force_sa.

    python3 sa_probe.py DIR WIDTH CPUS   # DIR/tokenized.0 must exist; table.0 is rebuilt
"""
import argparse, json, os, sys, io, contextlib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_sa import check
import infini_gram.indexing as ix


def build_sa(d, width, cpus=2, mem=8):
    d = os.path.abspath(d)
    t = os.path.join(d, 'table.0')
    if os.path.exists(t):
        os.remove(t)
    args = argparse.Namespace(save_dir=d, temp_dir=d, worker_id=0, workers=1, shards=1,
                              token_width=width, mem=mem, cpus=cpus)
    cwd = os.getcwd()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            ix.build_sa(args)
    except SystemExit as e:
        return 'build_sa exit %s: %s' % (e.code, buf.getvalue()[-500:])
    finally:
        os.chdir(cwd)
    return None


if __name__ == '__main__':
    d, w, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    err = build_sa(d, w, c)
    if err:
        print(json.dumps({'error': err})); sys.exit(1)
    print(json.dumps(check(d, w)))
