import sys; sys.path.insert(0, '.')
from mkindex import build, engine
import shutil
# A=1 at t12 in a doc of 25 tokens, B=2 at two positions x<y ; mdt 3
pos = [p for p in range(5, 20) if p != 12]
cfg = [(x, y) for x in pos for y in pos if x < y]
docs = []
for x, y in cfg:
    d = [9]*25; d[12] = 1; d[x] = 2; d[y] = 2; docs.append(d)
D='/tmp/pd/i12'; shutil.rmtree(D, ignore_errors=True); build(D, [docs]); e=engine(D)
L = 26
for mdt in (3,):
    r = e.find_cnf([[[1]],[[2]]], 10**6, mdt)['ptrs_by_shard'][0]
    res = {p // (2*L): (p % (2*L) - 2)//2 for p in r}
    print('mdt', mdt, 'rows x, cols y'); print('    ' + ''.join(f'{y:3d}' for y in pos))
    for x in pos:
        row = ''
        for y in pos:
            if (x, y) not in cfg: row += '   '; continue
            t = res.get(cfg.index((x, y))); row += '  .' if t is None else f'{t:3d}'
        print(f'{x:3d} ' + row)
