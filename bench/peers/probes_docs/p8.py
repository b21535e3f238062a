import sys; sys.path.insert(0, '.')
from mkindex import build, engine
from infini_gram.engine import InfiniGramEngine
import shutil
# A=1 at t=12, B=3 at t=12+b, C=2 at t=c ; filler 9 ; len 25
out = []
docs = []
for b in range(-6, 7):
    if b == 0: continue
    for c in range(25):
        if c in (12, 12+b): continue
        doc = [9]*25; doc[12] = 1; doc[12+b] = 3; doc[c] = 2
        docs.append((b, c, doc))
# one index per doc is slow; put each config in its own shard? Instead: separate docs in one shard won't interact (same-doc rule) -- verify later.
D = '/tmp/pd/i8'; shutil.rmtree(D, ignore_errors=True)
build(D, [[d for _,_,d in docs]])
e = engine(D)
offs = [2 + 52*i for i in range(len(docs))]  # doc i sep at 52*i (26 tokens * 2)
for mdt in (3, 4):
    r = e.find_cnf([[[1]],[[3]],[[2]]], 10**6, mdt)
    got = sorted(r['ptrs_by_shard'][0])
    res = {}
    for p in got:
        i = p // 52; t = (p - 52*i - 2)//2
        res[i] = t
    print('mdt', mdt, 'cnt', r['cnt'])
    for b in range(-6, 7):
        if b == 0: continue
        row = ''
        for c in range(25):
            idx = [k for k,(bb,cc,_) in enumerate(docs) if bb==b and cc==c]
            if not idx: row += '  A' if c == 12 else '  B'; continue
            t = res.get(idx[0]); row += '  .' if t is None else f'{t:3d}'
        print(f'b={b:+d}', row)
