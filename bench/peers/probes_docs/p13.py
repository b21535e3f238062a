import sys; sys.path.insert(0, '.')
from mkindex import build, engine
import shutil
def run(docs, cnf, mdts, tag=''):
    D='/tmp/pd/i13'; shutil.rmtree(D, ignore_errors=True); build(D, [docs]); e=engine(D)
    print(tag, docs, cnf, [(m, e.find_cnf(cnf, 1000, m)['ptrs_by_shard'][0]) for m in mdts])
run([[9,2,9,1,9],[2,9]], [[[1]],[[2]]], [1,2,3,4,5], 'left-same,right-nextdoc')
run([[2,9],[9,2,9,1]], [[[1]],[[2]]], [1,2,3,4,5,6,7], 'far-left-prevdoc,left-same')
run([[9,1,9,2,9],[9,9],[2]], [[[1]],[[2]]], [1,2,3,4,5,6,7,8], 'right-same, far-right next-next doc')
