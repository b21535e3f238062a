import sys, math; sys.path.insert(0, '.')
from mkindex import build, engine
# token 1 x25, token 2 x15, token 3 x29, token 4 x17 ; filler 9
doc = [1]*25 + [9] + [2]*15 + [9] + [3]*29 + [9] + [4]*17
D='/tmp/pd/i20'; build(D, [[doc]]); e=engine(D)
for t, n, L in [(1, 25, 7), (1, 25, 14), (3, 29, 15), (2, 15, 13), (4, 17, 7), (4, 17, 14)]:
    r = e.find_cnf([[[t]]], L, 1)
    print(n, L, 'kept', len(r['ptrs_by_shard'][0]), 'exact', -(-n*L//n), 'n*(L/c)', math.ceil(n*(L/n)), 'n/(c/L)', math.ceil(n/(n/L)), 'cnt', r['cnt'])
