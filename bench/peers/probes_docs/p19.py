import sys, math; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, term_ptrs
S = [[[2, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 1, 1, 2, 1, 2, 2, 2], [2, 1, 2, 1, 2, 2, 2, 2, 1, 2], [2, 1, 2, 1, 2, 2, 1, 1, 1, 2, 2, 2, 2, 1, 2], [2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 2], [2, 2, 1, 1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2, 2, 1, 2, 2, 1, 2, 2, 2, 1, 2, 1, 1, 2, 2, 2, 1, 2, 1, 1, 1, 2, 1, 2, 2, 1]], [[2, 2, 2, 2, 1, 1, 1, 2], [1, 1, 2, 2]]]
D='/tmp/pd/i19'; build(D, S); e=engine(D); sh=[load_shard(D,s) for s in range(2)]
for cl in ([[2],[2,2]], [[1,2],[2,1]], [[1],[2]], [[2,1],[1,1]], [[2]], [[2,2]]):
    for mcf in (9, 19):
        r = e.find_cnf([cl], mcf, 1)
        ns = [[len(term_ptrs(x[0], x[1], t)) for t in cl] for x in sh]
        print(cl, mcf, 'cnt', r['cnt'], r['approx'], 'kept', [len(p) for p in r['ptrs_by_shard']], 'n', ns)
