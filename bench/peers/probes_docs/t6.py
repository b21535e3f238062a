"""search_docs_cnf: cnt/approx = find_cnf's; each document = window of survivor j (uniform over j), idx = int(j / N * cnt) in double."""
import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard
from cnfsub import find_cnf
import docmodel as dm
random.seed(int(sys.argv[1])); bad = tot = 0
for corpus in range(int(sys.argv[2])):
    nsh = random.randint(1, 3); V = random.randint(2, 5)
    shards = [[[random.randint(1, V) for _ in range(random.randint(0, 40))] for _ in range(random.randint(1, 5))] for _ in range(nsh)]
    D = f'/tmp/pd/t6_{sys.argv[1]}_{corpus}'; build(D, shards); e = engine(D)
    sh = [load_shard(D, s) for s in range(nsh)]; infos = [dm.shard_info(D, s) for s in range(nsh)]
    bases = [sum(len(shards[j]) for j in range(s)) for s in range(nsh)]
    for q in range(15):
        cnf = [[[random.randint(1, V) for _ in range(random.choice([1, 1, 2]))] for _ in range(random.randint(1, 2))] for _ in range(random.randint(1, 3))]
        mdt = random.randint(1, 8); mcf = random.choice([random.randint(1, 40), 10**6]); mdl = random.randint(1, 9)
        m = find_cnf(sh, cnf, mdt, mcf)
        r = e.search_docs_cnf(cnf, maxnum=7, max_disp_len=mdl, max_clause_freq=mcf, max_diff_tokens=mdt)
        surv = [(s, p) for s, ps in enumerate(m['ptrs_by_shard']) for p in ps]; N = len(surv)
        tot += 1
        ok = r['cnt'] == (m['cnt'] if N else 0) and r['approx'] == (m['approx'] if N else False) and len(r['idxs']) == (7 if N else 0)
        for idx, doc in zip(r['idxs'], r['documents']):
            js = [j for j in range(N) if int(j / N * m['cnt']) == idx]
            got = {k: v for k, v in doc.items() if k not in ('metadata', 'blocked')}
            if not any(got == dm.by_ptr(infos[surv[j][0]], bases[surv[j][0]], surv[j][1], mdl) for j in js): ok = False
        if not ok:
            bad += 1
            if bad < 4: print('MISMATCH', shards, cnf, mdt, mcf, mdl, r, m)
print('seed', sys.argv[1], 'cases', tot, 'bad', bad)
