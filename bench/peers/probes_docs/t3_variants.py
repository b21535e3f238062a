"""Checks that the test data actually discriminate the model's choices: each variant must FAIL somewhere."""
import sys, random, bisect; sys.path.insert(0, '.')
from mkindex import build, engine
import cnfmodel
from cnfmodel import load_shard, term_ptrs
random.seed(5)
variants = {
 'global_order': lambda shards, cnf: sorted(range(len(cnf)), key=lambda i: sum(len(term_ptrs(s[0], s[1], t)) for s in shards for t in cnf[i])),
 'ties_last': lambda shards, cnf: None,
}
bad = {k: 0 for k in variants}; tot = 0
for corpus in range(25):
    nsh = random.randint(2, 4); V = random.randint(2, 5)
    shards = [[[random.randint(1, V) for _ in range(random.randint(0, 25))] for _ in range(random.randint(1, 5))] for _ in range(nsh)]
    D = f'/tmp/pd/t3_{corpus}'; build(D, shards); e = engine(D)
    sh = [load_shard(D, s) for s in range(nsh)]
    for q in range(30):
        cnf = [[[random.randint(1, V) for _ in range(random.choice([1,1,2]))] for _ in range(random.randint(1, 2))] for _ in range(random.randint(2, 4))]
        mdt = random.randint(1, 10)
        r = e.find_cnf(cnf, 10**6, mdt)
        if r['cnt'] == 0 and r['ptrs_by_shard'] == []: continue
        tot += 1
        go = variants['global_order'](sh, cnf)
        m = [cnfmodel.find_cnf_shard(s, cnf, mdt, global_order=go) for s in sh]
        bad['global_order'] += m != r['ptrs_by_shard']
        m = []
        for s in sh:
            occ = [[p for t in cl for p in term_ptrs(s[0], s[1], t)] for cl in cnf]
            order = sorted(range(len(cnf)), key=lambda i: (len(occ[i]), -i))
            m.append(cnfmodel.find_cnf_shard(s, cnf, mdt, global_order=order))
        bad['ties_last'] += m != r['ptrs_by_shard']
print('cases', tot, 'variant mismatches', bad)
