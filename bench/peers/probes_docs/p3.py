import sys, json, collections; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i3'
shards=[[[9,1]], [[1]*9 , [2]], [[3,4,5,6,7,8,9,10], []]]
build(D, shards)
e=engine(D)
print(e.find([1]))
r=e.search_docs([1], maxnum=20000, max_disp_len=1)
c=collections.Counter(r['idxs']); print(sorted(c.items()))
c=collections.Counter(d['doc_ix'] for d in r['documents']); print(sorted(c.items()))
def sh(d): return {k:v for k,v in d.items() if k!='metadata'} if isinstance(d,dict) else d
for ix in range(5): print('ix', ix, sh(e.get_doc_by_ix(ix, max_disp_len=4)))
print('ix big', sh(e.get_doc_by_ix(2, max_disp_len=100)))
print([sh(x) for x in e.get_docs_by_ixs([4,0,4], max_disp_len=3)])
print(e.get_doc_by_ix(5, max_disp_len=3), e.get_doc_by_ix(-1, max_disp_len=3))
print(e.get_doc_by_ix(0, max_disp_len=0))
print(e.get_docs_by_ixs([], max_disp_len=3))
# ptr
for s,ptr in [(2,0),(2,2),(2,4),(2,8),(2,16),(2,18),(1,20),(1,22),(1,0)]:
    print('ptr', s, ptr, sh(e.get_doc_by_ptr(s, ptr, max_disp_len=4)))
print(e.get_doc_by_ptr(2, 20, 4), e.get_doc_by_ptr(2, 3, 4), e.get_doc_by_ptr(3, 0, 4))
print([sh(x) for x in e.get_docs_by_ptrs([(2,6),(0,2)], max_disp_len=3)])
for s in range(3):
    print('tok_cnt', s, e.engine.get_tok_cnt(s=s), 'ds', e.engine.get_ds_size(s=s))
    for rk in range(e.engine.get_tok_cnt(s=s)):
        print('  rank', s, rk, sh(e.get_doc_by_rank(s, rk, max_disp_len=3)))
print(e.get_doc_by_rank(2, 11, 3), e.get_doc_by_rank(0, 3, 3))
print([sh(x) for x in e.get_docs_by_ranks([(2,3),(1,0)], max_disp_len=3)])
