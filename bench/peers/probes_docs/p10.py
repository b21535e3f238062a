import sys; sys.path.insert(0, '.')
from mkindex import build, engine
import shutil
def grid(base, var_tok, xs, cnf, mdts):
    docs = []
    for x in xs:
        doc = list(base)
        if doc[x] != 9: docs.append(None); continue
        doc[x] = var_tok; docs.append(doc)
    real = [d for d in docs if d]
    D='/tmp/pd/i10'; shutil.rmtree(D, ignore_errors=True); build(D, [real]); e=engine(D)
    L = len(base) + 1
    for m in mdts:
        r = e.find_cnf(cnf, 10**6, m)['ptrs_by_shard'][0]
        res = {p // (2*L): (p % (2*L) - 2)//2 for p in r}
        row = ''; k = 0
        for x, d in zip(xs, docs):
            if d is None: row += '  *'; continue
            t = res.get(k); k += 1
            row += '  .' if t is None else f'{t:3d}'
        print(f'mdt={m}', ' '.join(f'{x:2d}' for x in xs)); print('      ', row)
base = [9]*40; base[20]=1; base[23]=3; base[18]=2; base[22]=2; base[39]=4
grid(base, 4, range(10, 32), [[[1]],[[3]],[[2]],[[4]]], [3])
