import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, find_cnf
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
NC = int(sys.argv[2]) if len(sys.argv) > 2 else 20
bad = 0; tot = 0
for corpus in range(NC):
    nsh = random.randint(1, 3); V = random.randint(2, 6)
    shards = [[[random.randint(1, V) for _ in range(random.randint(0, 15))] for _ in range(random.randint(1, 5))] for _ in range(nsh)]
    D = f'/tmp/pd/r{corpus}'
    build(D, shards); e = engine(D)
    sh = [load_shard(D, s) for s in range(nsh)]
    for q in range(30):
        ncl = random.randint(1, 4)
        cnf = [[[random.randint(1, V) for _ in range(random.randint(1, 2))] for _ in range(random.randint(1, 2))] for _ in range(ncl)]
        mdt = random.randint(1, 8)
        r = e.find_cnf(cnf, 10**6, mdt)
        m = find_cnf(sh, cnf, mdt)
        c = e.count_cnf(cnf, 10**6, mdt)
        tot += 1
        if r['ptrs_by_shard'] != m['ptrs_by_shard'] or r['cnt'] != m['cnt'] or r['approx'] or c != {'count': m['cnt'], 'approx': False}:
            bad += 1
            if bad <= 8: print('MISMATCH', shards, cnf, mdt, r, m, c)
print('total', tot, 'bad', bad)
