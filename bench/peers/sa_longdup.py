#!/usr/bin/env python3
"""Synthetic long-duplicate test: python3 sa_longdup.py WIDTH DUP_BYTES TOTAL_BYTES CPUS... (run in a scratch dir)."""
import os, numpy as np, subprocess, json, sys
P='/work/main/bench/peers/sa_probe.py'
rng=np.random.default_rng(1)
def run(name, toks, width, cpus):
    os.makedirs(name, exist_ok=True)
    dt={1:'u1',2:'<u2',4:'<u4'}[width]
    np.array(toks, dtype=dt).tofile(f'{name}/tokenized.0')
    r=subprocess.run(['python3',P,name,str(width),str(cpus)],capture_output=True,text=True)
    j=json.loads(r.stdout.strip()); j={k:j[k] for k in j if k in('ds_size','table_bytes','exact_match','first_mismatch_rank','num_mismatched_ranks','duplicated_offsets_count','distinct_entries','error')}
    print(name, 'cpus',cpus, j, flush=True)
w=int(sys.argv[1]); dup=int(sys.argv[2]); total=int(sys.argv[3])
s=(1<<(8*w))-1
n=total//w; L=dup//w
toks=rng.integers(0,200,n); toks[0]=s
toks[n//2-L//2:n//2-L//2+L]=toks[10:10+L]   # long duplicate: second copy in the middle
for c in map(int, sys.argv[4:]):
    run(f'longdup_w{w}_{dup}_{total}', toks, w, c)
