import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
import docmodel as dm
random.seed(int(sys.argv[1])); bad = 0; tot = 0
def cmp(got, exp, what):
    global bad, tot
    tot += 1
    g = {k: v for k, v in got.items() if k not in ('metadata', 'blocked')} if isinstance(got, dict) else got
    if g != exp:
        bad += 1
        if bad < 6: print('MISMATCH', what, g, exp)
for corpus in range(int(sys.argv[2])):
    nsh = random.randint(1, 3)
    shards = [[[random.randint(1, 4) for _ in range(random.choice([0, 1, 2, 5, 20]))] for _ in range(random.randint(1, 4))] for _ in range(nsh)]
    D = f'/tmp/pd/t5_{sys.argv[1]}_{corpus}'; build(D, shards); e = engine(D)
    infos = [dm.shard_info(D, s) for s in range(nsh)]
    bases = [sum(len(shards[j]) for j in range(s)) for s in range(nsh)]
    for s in range(nsh):
        data, offs, sa = infos[s]
        for ptr in range(0, len(data), 2):
            for mdl in (1, 2, 3, 4, 7):
                cmp(e.get_doc_by_ptr(s, ptr, mdl), dm.by_ptr(infos[s], bases[s], ptr, mdl), ('ptr', s, ptr, mdl))
            nl, mc = random.randint(0, 4), random.randint(0, 4)
            try: exp = dm.by_ptr_2(infos[s], bases[s], ptr, nl, mc)
            except ValueError as ex: exp = 'ValueError'
            try: got = e.get_doc_by_ptr_2(s, ptr, nl, mc)
            except ValueError: got = 'ValueError'
            cmp(got, exp, ('ptr2', s, ptr, nl, mc))
        for rank in range(len(sa)):
            mdl = random.randint(1, 9)
            cmp(e.get_doc_by_rank(s, rank, mdl), dm.by_rank(infos[s], bases[s], rank, mdl), ('rank', s, rank, mdl))
        for i in range(len(offs)):
            mdl = random.randint(1, 9); mc = random.randint(0, 9)
            cmp(e.get_doc_by_ix(bases[s] + i, mdl), dm.by_ix(infos[s], bases[s], i, mdl), ('ix', s, i, mdl))
            cmp(e.get_doc_by_ix_2(bases[s] + i, mc), dm.by_ix_2(infos[s], bases[s], i, mc), ('ix2', s, i, mc))
    # search_docs: idx = global rank over concatenated per-shard find segments
    for q in range(20):
        query = [random.randint(1, 4) for _ in range(random.randint(0, 3))]
        mdl = random.randint(1, 9)
        r = e.search_docs(query, maxnum=5, max_disp_len=mdl); f = e.find(query)
        segs = f['segment_by_shard']
        tot += 1
        if r['cnt'] != f['cnt'] or r['approx'] or len(r['idxs']) != (5 if f['cnt'] else 0): bad += 1; print('BAD cnt', query, r, f)
        for idx, doc in zip(r['idxs'], r['documents']):
            for s, (a, b) in enumerate(segs):
                if idx < b - a: break
                idx -= b - a
            cmp(doc, dm.by_rank(infos[s], bases[s], a + idx, mdl), ('search', query, mdl))
print('seed', sys.argv[1], 'checks', tot, 'bad', bad)
