import sys; sys.path.insert(0, '.')
from mkindex import engine
import numpy as np
D='/tmp/pd/big1'; e=engine(D)
segs = {t: e.find([t])['segment_by_shard'][0] for t in range(1,7)}
print(segs)
# rank of each ptr within its term segment: read table
data = open(f'{D}/tokenized.0','rb').read()
ps = 3
tab = open(f'{D}/table.0','rb').read()
sa = np.frombuffer(tab, dtype=np.uint8).reshape(-1, ps)
sa = sa[:,0].astype(np.int64) | (sa[:,1].astype(np.int64) << 8) | (sa[:,2].astype(np.int64) << 16)
rank_of = {int(p): i for i, p in enumerate(sa)}
for cnf, mcf in [([[[1],[2],[3],[4],[5],[6]]], 6), ([[[1],[2],[3],[4],[5],[6]]], 60), ([[[1]]], 1), ([[[2]]], 1), ([[[1]]], 7), ([[[6],[5],[4],[3],[2],[1]]], 6)]:
    r = e.find_cnf(cnf, mcf, 1)
    ptrs = r['ptrs_by_shard'][0]
    out = []
    for p in ptrs:
        rk = rank_of[p]; t = [t for t,(a,b) in segs.items() if a <= rk < b][0]
        out.append((t, rk - segs[t][0]))
    # compress runs
    runs = []
    for t, o in out:
        if runs and runs[-1][0] == t and runs[-1][2] + 1 == o: runs[-1][2] = o
        else: runs.append([t, o, o])
    print(cnf, mcf, 'cnt', r['cnt'], r['approx'], 'runs (term, first, last):', runs)
