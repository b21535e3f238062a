import sys, random, math; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, term_ptrs
random.seed(3)
D='/tmp/pd/i18'
build(D, [[[random.randint(1, 4) for _ in range(400)]]])
e = engine(D); x = load_shard(D, 0)
n = {t: len(term_ptrs(x[0], x[1], [t])) for t in range(1, 5)}
print(n)
for cnf in ([[[1]], [[2]]], [[[1]], [[2], [3]]], [[[1],[4]], [[2], [3]]], [[[2], [3]], [[1]]]):
    for mcf in (7, 10, 19, 30, 50, 77):
        r = e.find_cnf(cnf, mcf, 1000)
        surv = len(r['ptrs_by_shard'][0])
        ks = []; rat = []
        for cl in cnf:
            ns = [n[t[0]] for t in cl]; c = sum(ns)
            k = [math.ceil(v * mcf / c) for v in ns] if c > mcf else ns
            ks.append(k); rat.append(c // sum(k))
        print(cnf, mcf, 'cnt', r['cnt'], 'surv', surv, 'F=cnt/surv', r['cnt'] / surv if surv else None, 'k', ks, 'model ratios', rat, math.prod(rat))
