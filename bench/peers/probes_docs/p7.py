import sys; sys.path.insert(0, '.')
from mkindex import build, engine
def run(doc, cnf, mdts):
    D='/tmp/pd/i7'; build(D, [[doc]]); e=engine(D)
    print(doc, cnf, [(m, e.find_cnf(cnf, 1000, m)['ptrs_by_shard'][0]) for m in mdts])
# token idx t is at byte 2+2t
run([2,2,9,9,9,1,9,9,9,2,2], [[[1]],[[2]]], range(1,8))
run([2,9,9,9,9,1,9,2,9,9,9], [[[1]],[[2]]], range(1,8))
run([9,9,9,9,2,1,9,9,9,9,2], [[[1]],[[2]]], range(1,8))
run([2,3,9,9,9,1,9,9,9,3,2], [[[1]],[[2]]], range(1,8))
run([2,3,9,9,9,1,9,9,9,3,2], [[[1]],[[3]]], range(1,8))
run([2,4,9,9,9,1,9,9,9,3,2], [[[1]],[[2]],[[3]]], range(1,8))
