#!/usr/bin/env python3
"""Probe infini_gram.engine.InfiniGramEngine edge cases on an index built by
infinigram_build.py, comparing with brute-force counts over tokenized.N.

    python3 probe_engine.py INDEX_DIR TOKEN_DTYPE EOS VOCAB [VERSION]
Each probe runs in a fresh subprocess (so a segfault/abort is reported, not fatal).
"""
import json
import os
import subprocess
import sys

CHILD = r'''
import json, sys, numpy as np
from infini_gram.engine import InfiniGramEngine
d, dt, eos, vocab, version, call = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
e = InfiniGramEngine(index_dir=d, eos_token_id=eos, vocab_size=vocab, token_dtype=dt, version=version)
def conv(x):
    if isinstance(x, dict): return {str(k): conv(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [conv(v) for v in x]
    return x
r = conv(eval(call, {'e': e}))
if isinstance(r, dict) and isinstance(r.get('result_by_token_id'), dict) and len(r['result_by_token_id']) > 6:
    d = r['result_by_token_id']; ks = sorted(int(k) for k in d)
    r['result_by_token_id'] = {'n_keys': len(ks), 'min_key': ks[0], 'max_key': ks[-1],
        'sum_cont_cnt': sum(v['cont_cnt'] for v in d.values()), 'sum_prob': round(sum(v['prob'] for v in d.values()), 6)}
print('RESULT ' + json.dumps(r))
'''


def probe(index_dir, dt, eos, vocab, version, call, timeout=60):
    p = subprocess.run([sys.executable, '-c', CHILD, index_dir, dt, str(eos), str(vocab), str(version), call],
                       capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    return {'CRASH_rc': p.returncode, 'stderr_tail': p.stderr.strip().splitlines()[-1:] if p.stderr.strip() else ''}


if __name__ == '__main__':
    d, dt, eos, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    version = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    for call in sys.stdin.read().strip().splitlines():
        print(call, '=>', json.dumps(probe(d, dt, eos, vocab, version, call)))
