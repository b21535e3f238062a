import sys; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i5'
# shard0: doc0 = 1 2 3 1 9 9 9 2 ; doc1 = 2 ; shard1: doc2 = 1 5 5 5 5 2 1
shards=[[[1,2,3,1,9,9,9,2],[2]], [[1,5,5,5,5,2,1]]]
build(D, shards)
e=engine(D)
print(e.find([1]), e.find([2]))
for mdt in (1,2,3,4,5,6,10):
    print(mdt, e.find_cnf([[[1]],[[2]]], max_clause_freq=1000, max_diff_tokens=mdt), e.count_cnf([[[1]],[[2]]], max_clause_freq=1000, max_diff_tokens=mdt))
print(e.find_cnf([[[2]],[[1]]], max_clause_freq=1000, max_diff_tokens=3))
print(e.find_cnf([[[1]]], max_clause_freq=1000, max_diff_tokens=3), e.find_cnf([[[1],[2]]], max_clause_freq=1000, max_diff_tokens=3))
print(e.find_cnf([[[1],[1]]], max_clause_freq=1000, max_diff_tokens=3))
print(e.find_cnf([[[1]],[[1]]], max_clause_freq=1000, max_diff_tokens=3))
