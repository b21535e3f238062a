import sys; sys.path.insert(0, '.')
from mkindex import build, engine
import shutil
def run(docs, cnf, mdts, tag=''):
    D='/tmp/pd/i9'; shutil.rmtree(D, ignore_errors=True); build(D, [docs]); e=engine(D)
    print(tag, docs, cnf, [(m, e.find_cnf(cnf, 1000, m)['ptrs_by_shard'][0]) for m in mdts])
# doc boundary: doc0 ends with 2, doc1 = 1 9 2
run([[9,9,2],[1,9,2]], [[[1]],[[2]]], [1,2,3,4], 'left-in-prev-doc')
run([[9,9,2],[1,9,9,9,9,2]], [[[1]],[[2]]], [1,2,3,4,5,6], 'left-prev-doc/right-far')
run([[9,9,2],[1]], [[[1]],[[2]]], [1,2,3,4], 'only-prev-doc')
run([[1],[2,9]], [[[1]],[[2]]], [1,2,3,4], 'only-next-doc')
run([[1,9,9],[2,9]], [[[1]],[[2]]], [1,2,3,4], 'only-next-doc-b')
print('----')
run([[9,9],[1,9,2]], [[[1]],[[2]]], [1,2,3,4], 'sep-in-window-no-cand')
run([[9,9,2,9,9,9,9],[1,9,2]], [[[1]],[[2]]], [1,2,3,4,5,6,7,8,9], 'left-far-prev-doc')
run([[9,9,2],[9,1,9,2]], [[[1]],[[2]]], [1,2,3,4,5,6], 'left-prev-doc-d3')
run([[2,1,9,2],[9]], [[[1]],[[2]]], [1,2,3,4,5,6], 'within')
