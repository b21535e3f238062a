import sys, json; sys.path.insert(0, '.')
from mkindex import build, engine
D='/tmp/pd/i2'
doc=list(range(100,140))
shards=[[doc, [7,7,50,7]], [[50]*3]]
build(D, shards)
e=engine(D)
for mdl in range(1,12):
    r=e.search_docs([120], maxnum=1, max_disp_len=mdl)
    d=r['documents'][0]; print(mdl, d['needle_offset'], d['disp_len'], d['token_ids'])
r=e.search_docs([120,121,122], maxnum=1, max_disp_len=5); d=r['documents'][0]; print('3-gram', d['needle_offset'], d['token_ids'])
r=e.search_docs([101], maxnum=1, max_disp_len=9); d=r['documents'][0]; print('near start', d['needle_offset'], d['token_ids'])
r=e.search_docs([138], maxnum=1, max_disp_len=9); d=r['documents'][0]; print('near end', d['needle_offset'], d['token_ids'])
print(e.search_docs([120], maxnum=3, max_disp_len=3)['idxs'])
print(e.search_docs([999], maxnum=3, max_disp_len=3))
r=e.search_docs([], maxnum=3, max_disp_len=3); print('empty', r['cnt'], r['approx'], r['idxs'], [(d['doc_ix'], d['needle_offset'], d['token_ids']) for d in r['documents']])
r=e.search_docs([50], maxnum=10, max_disp_len=3); print('50', r['cnt'], r['idxs'], [(d['doc_ix'], d['needle_offset'], d['token_ids']) for d in r['documents']])
print(e.find([50]))
r=e.search_docs([65535], maxnum=10, max_disp_len=3); print('sep', r['cnt'], r['idxs'], [(d['doc_ix'], d['doc_len'], d['needle_offset'], d['token_ids']) for d in r['documents']])
print(e.find([65535]))
r=e.search_docs([139, 65535, 7], maxnum=3, max_disp_len=10); print('cross', r['cnt'], r['idxs'], [(d['doc_ix'], d['doc_len'], d['needle_offset'], d['token_ids']) for d in r['documents']])
