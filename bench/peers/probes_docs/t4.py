import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard
from cnfsub import find_cnf
seed = int(sys.argv[1]); random.seed(seed); NC = int(sys.argv[2])
bad = 0; tot = 0; sub = 0
for corpus in range(NC):
    nsh = random.randint(1, 4); V = random.randint(2, 6)
    shards = [[[random.randint(1, V) for _ in range(random.randint(0, 40))] for _ in range(random.randint(1, 6))] for _ in range(nsh)]
    D = f'/tmp/pd/t4_{seed}_{corpus}'; build(D, shards); e = engine(D)
    sh = [load_shard(D, s) for s in range(nsh)]
    for q in range(40):
        tok = lambda: 65535 if random.random() < 0.03 else random.randint(1, V + 1)
        cnf = [[[tok() for _ in range(random.choice([1,1,1,2,3]))] for _ in range(random.randint(1, 4))] for _ in range(random.randint(1, 4))]
        mdt = random.randint(1, 10); mcf = random.choice([random.randint(1, 30), random.randint(1, 200), 10**6])
        r = e.find_cnf(cnf, mcf, mdt); c = e.count_cnf(cnf, mcf, mdt)
        m = find_cnf(sh, cnf, mdt, mcf, rng_scope=sys.argv[3] if len(sys.argv) > 3 else 'clause')
        tot += 1; sub += m['approx']
        if r != m or c != {'count': m['cnt'], 'approx': m['approx']}:
            bad += 1
            if bad <= 5: print('MISMATCH', shards, cnf, mdt, mcf, '\n  engine', r, c, '\n  model ', m)
print('seed', seed, 'total', tot, 'approx cases', sub, 'bad', bad)
