import sys, random; sys.path.insert(0, '.')
from mkindex import build, engine
random.seed(1)
shards = [[[random.randint(1, 3) for _ in range(60)] for _ in range(5)] for _ in range(2)]
D='/tmp/pd/i15'; build(D, shards); e=engine(D)
print('find1', e.find([1])['cnt'], [b-a for a,b in e.find([1])['segment_by_shard']], 'find2', [b-a for a,b in e.find([2])['segment_by_shard']])
for mcf in (1000, 200, 100, 99, 50, 10, 1):
    r = e.find_cnf([[[1]]], mcf, 5)
    print('mcf', mcf, r['cnt'], r['approx'], [len(x) for x in r['ptrs_by_shard']], e.count_cnf([[[1]]], mcf, 5))
for mcf in (1000, 150, 100, 50, 10):
    r = e.find_cnf([[[1]],[[2]]], mcf, 1)
    print('AND mcf', mcf, r['cnt'], r['approx'], [len(x) for x in r['ptrs_by_shard']], e.count_cnf([[[1]],[[2]]], mcf, 1), e.count_cnf([[[1]],[[2]]], mcf, 1))
for mcf in (1000, 150, 100, 50):
    r = e.find_cnf([[[1],[2]]], mcf, 1)
    print('OR mcf', mcf, r['cnt'], r['approx'], [len(x) for x in r['ptrs_by_shard']])
print(e.find_cnf([[[1]]], 10, 5)['ptrs_by_shard'])
print(e.find_cnf([[[1]]], 10, 5)['ptrs_by_shard'])
