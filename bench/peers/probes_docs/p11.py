import sys; sys.path.insert(0, '.')
from mkindex import build, engine
from cnfmodel import load_shard, find_cnf_shard
import shutil
D='/tmp/pd/i11'; shutil.rmtree(D, ignore_errors=True)
build(D, [[[3, 4, 1, 1, 1, 4, 2, 3, 4, 4, 4, 2, 1, 1], [3, 3, 3, 1, 4]]]); e=engine(D)
sh=load_shard(D,0)
for cnf in ([[[4,4],[2]], [[3]]], [[[4,4]], [[3]]], [[[2]], [[3]]], [[[2],[4,4]], [[3]]], [[[1,3],[1]], [[3],[2,1]]], [[[1]], [[3]]], [[[1]], [[2,1]]], [[[1]], [[3],[2,1]]], [[[3],[2,1]], [[1]]]):
    for mdt in (4, 6):
        print(cnf, mdt, e.find_cnf(cnf, 10**6, mdt)['ptrs_by_shard'][0], 'model', find_cnf_shard(sh, cnf, mdt))
