"""Randomised check of cnfmodel.find_cnf against the engine (exact regime). python3 t2.py SEED NCORPORA"""
import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, find_cnf
seed = int(sys.argv[1]); random.seed(seed)
NC = int(sys.argv[2])
bad = 0; tot = 0; nonzero = 0
for corpus in range(NC):
    nsh = random.randint(1, 4); V = random.randint(2, 8)
    shards = [[[random.randint(1, V) for _ in range(random.randint(0, 30))] for _ in range(random.randint(1, 6))] for _ in range(nsh)]
    D = f'/tmp/pd/t2_{seed}_{corpus}'
    build(D, shards); e = engine(D)
    sh = [load_shard(D, s) for s in range(nsh)]
    for q in range(40):
        ncl = random.randint(1, 5)
        def tok(): return 65535 if random.random() < 0.03 else random.randint(1, V)
        cnf = [[[tok() for _ in range(random.choice([1,1,1,2,2,3]))] for _ in range(random.randint(1, 3))] for _ in range(ncl)]
        mdt = random.randint(1, 20)
        r = e.find_cnf(cnf, 10**6, mdt)
        m = find_cnf(sh, cnf, mdt)
        c = e.count_cnf(cnf, 10**6, mdt)
        tot += 1; nonzero += m['cnt'] > 0
        if r['ptrs_by_shard'] != m['ptrs_by_shard'] or r['cnt'] != m['cnt'] or r['approx'] or c != {'count': m['cnt'], 'approx': False}:
            bad += 1
            if bad <= 5: print('MISMATCH', shards, cnf, mdt, r, m, c)
print('seed', seed, 'total', tot, 'nonzero', nonzero, 'bad', bad)
