#!/usr/bin/env python3
"""List adjacent inversions of table.0 and their LCPs: python3 sa_inversions.py DIR WIDTH."""
import sys; sys.path.insert(0,'/work/main/bench/peers')
from check_sa import *
d,w=sys.argv[1],int(sys.argv[2])
ds=open(d+'/tokenized.0','rb').read(); n=len(ds); ps=math.ceil(math.log2(n)/8)
t,_=read_table(d+'/table.0',ps)
def lcp(a,b):
    lo=0; k=1
    # exponential+binary search on equal prefix length
    while a+k<=n and b+k<=n and ds[a:a+k]==ds[b:b+k]: k*=2
    hi=min(k,n-a,n-b)
    while lo<hi:
        m=(lo+hi+1)//2
        if ds[a:a+m]==ds[b:b+m]: lo=m
        else: hi=m-1
    return lo
inv=[]
for i in range(len(t)-1):
    a,b=t[i],t[i+1]; l=lcp(a,b)
    sa,sb=ds[a+l:a+l+1],ds[b+l:b+l+1]
    if not (sa<sb): inv.append((i,a,b,l))
print('adjacent inversions',len(inv))
if inv:
    ls=[x[3] for x in inv]; print('lcp of inverted pairs min/max',min(ls),max(ls)); print(inv[:5])
