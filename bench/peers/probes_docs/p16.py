import sys; sys.path.insert(0, '.')
from mkindex import engine
from cnfmodel import load_shard, term_ptrs
D='/tmp/pd/i15'; e=engine(D)
sh=[load_shard(D,s) for s in range(2)]
for mcf in (200, 100, 50, 10, 1):
    r=e.find_cnf([[[1]]], mcf, 5)['ptrs_by_shard']
    for s in range(2):
        sa_ptrs = term_ptrs(sh[s][0], sh[s][1], [1])
        ranks = [sa_ptrs.index(p) for p in r[s]]
        print(mcf, s, len(sa_ptrs), ranks)
r=e.find_cnf([[[1],[2]]], 50, 5)['ptrs_by_shard']
for s in range(2):
    a = term_ptrs(sh[s][0], sh[s][1], [1]); b = term_ptrs(sh[s][0], sh[s][1], [2])
    print('OR', s, len(a), len(b), [('1', a.index(p)) if p in a else ('2', b.index(p)) for p in r[s]])
