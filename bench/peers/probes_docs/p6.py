import sys; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i6'
# doc0: 7 1 ; doc1: 2 8 8 8 ;  cross-boundary distance 1->2 = 2 tokens (sep between)
# doc2: 3 3 3 4 4 0 0 0 0 0 5 6 (multi-token terms)
shards=[[[7,1],[2,8,8,8],[3,3,3,4,4,0,0,0,0,0,5,6]]]
build(D, shards)
e=engine(D)
for mdt in (1,2,3): print('cross', mdt, e.find_cnf([[[1]],[[2]]], 1000, mdt))
# multi-token: [3,3,3]@ token idx? shard bytes: sep0 7@2 1@4 sep6 2@8 8@10,12,14 sep16 3@18,20,22 4@24,26 0@28..36 5@38 6@40
for mdt in range(1,12): print('multi', mdt, e.find_cnf([[[3,3,3]],[[5,6]]], 1000, mdt), e.find_cnf([[[5,6]],[[4,4,0]]], 1000, mdt))
