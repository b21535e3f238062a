import sys; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, term_ptrs
from cnfsub import shard_cnf
import math
def dbg(shards, cnf, mdt, mcf):
    D='/tmp/pd/dbg'; build(D, shards); e=engine(D); sh=[load_shard(D,s) for s in range(len(shards))]
    r = e.find_cnf(cnf, mcf, mdt); print('engine', r['cnt'], r['approx'], [len(x) for x in r['ptrs_by_shard']])
    for s, x in enumerate(sh):
        n = [[len(term_ptrs(x[0], x[1], t)) for t in cl] for cl in cnf]
        out, f, ratios = shard_cnf(x, cnf, mdt, mcf, len(shards), rng_scope='clause')
        lim = mcf/len(shards)
        ks = [[math.ceil(v*lim/sum(c)) for v in c] if sum(c) > lim else c for c in n]
        print(' shard', s, 'term counts', n, 'k', ks, 'ratios', ratios, 'model survivors', len(out))
S = [[[2, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 1, 1, 2, 1, 2, 2, 2], [2, 1, 2, 1, 2, 2, 2, 2, 1, 2], [2, 1, 2, 1, 2, 2, 1, 1, 1, 2, 2, 2, 2, 1, 2], [2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 2], [2, 2, 1, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2, 2, 1, 2, 2, 1, 2, 2, 2, 1, 2, 1, 1, 2, 2, 2, 1, 2, 1, 1, 1, 2, 1, 2, 2, 1]], [[2, 2, 2, 2, 1, 1, 1, 2], [1, 1, 2, 2]]]
dbg(S, [[[2], [2, 2]], [[1, 2], [2, 1]]], 2, 9)
dbg(S, [[[2, 1], [1, 1]], [[1], [2]]], 9, 19)
