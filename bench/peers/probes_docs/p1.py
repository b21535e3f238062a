import sys, json; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i1'
shards=[[[1,2,3,4,5,6,7,8,9,10],[5,6,7],[3]], [[11,5,6,12,13,5,6],[]], [[5,5,5,5]]]
build(D, shards)
e=engine(D)
print('total', e.get_total_doc_cnt())
for s in range(3): print('s', s, e.engine.get_tok_cnt(s=s), e.engine.get_ds_size(s=s))
print(e.find([5,6]))
for mdl in (1,2,3,5,100):
    r=e.search_docs([5,6], maxnum=20, max_disp_len=mdl)
    print('mdl', mdl, 'cnt', r['cnt'], r['approx'], r['idxs'])
    for d in r['documents']: print('   ', d)
