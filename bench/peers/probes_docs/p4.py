import sys, json, collections; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i3'
e=engine(D)
def sh(d): return {k:v for k,v in d.items() if k not in('metadata','doc_len','blocked')} if isinstance(d,dict) else d
# shard 2: sep@0, 3..10 at 2..16, sep@18 (doc4 empty)
for nl in (0,1,2,3):
  for mc in (0,1,2,3):
    print('ptr_2 ptr8 nl',nl,'mc',mc, sh(e.get_doc_by_ptr_2(2, 8, nl, mc)))
print('ptr_2 ptr0', sh(e.get_doc_by_ptr_2(2, 0, 1, 2)), sh(e.get_doc_by_ptr_2(2, 0, 0, 0)))
print('ptr_2 ptr14 nl5', sh(e.get_doc_by_ptr_2(2, 14, 5, 1)))
print('rank_2', sh(e.get_doc_by_rank_2(2, 3, 2, 1)))
for mc in (0,1,3,100): print('ix_2', mc, sh(e.get_doc_by_ix_2(3, mc)))
print([sh(x) for x in e.get_docs_by_ixs_2([(3,2),(0,1)])])
print([sh(x) for x in e.get_docs_by_ptrs_2([(2,8,1,1),(1,4,2,0)])])
try: print([sh(x) for x in e.get_docs_by_ranks_2([(2,3,2,1)])])
except Exception as ex: print('ranks_2 EXC', repr(ex))
print(e.get_doc_by_ix(0, max_disp_len=3)['metadata'].encode())
