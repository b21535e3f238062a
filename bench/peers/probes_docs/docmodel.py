"""Brute-force model of the document window functions (u16, W=2). All arithmetic is u64 (wraps)."""
import bisect, struct
M = 1 << 64
def shard_info(d, s):
    data = open(f'{d}/tokenized.{s}', 'rb').read()
    offs = [o for (o,) in struct.iter_unpack('<Q', open(f'{d}/offset.{s}', 'rb').read())]
    sa = sorted(range(0, len(data), 2), key=lambda p: data[p:])
    return data, offs, sa

def window(info, doc_base, ptr, lo_bytes, hi_bytes, i=None):
    """doc i = the doc whose separator is the last one at or before ptr; window = [max(ptr-lo, content start), min(ptr+hi, doc end))"""
    data, offs, _ = info
    if i is None: i = bisect.bisect_right(offs, ptr) - 1
    cs = offs[i] + 2                                        # first content byte (after the separator)
    de = offs[i + 1] if i + 1 < len(offs) else len(data)
    start = ptr - lo_bytes if ptr >= lo_bytes and ptr - lo_bytes > cs else cs   # no wrap below 0
    end = min((ptr + hi_bytes) % M, de)
    if end < start: raise ValueError('cannot create std::vector larger than max_size()')
    toks = [t for (t,) in struct.iter_unpack('<H', data[start:end])]
    return {'doc_ix': doc_base + i, 'doc_len': (de - cs) // 2, 'disp_len': len(toks),
            'needle_offset': ((ptr - start) % M) // 2, 'token_ids': toks}

def by_ptr(info, base, ptr, mdl):          # also search_docs / search_docs_cnf documents
    return window(info, base, ptr, (mdl // 2) * 2 % M, (mdl - mdl // 2) * 2 % M)
def by_rank(info, base, rank, mdl): return by_ptr(info, base, info[2][rank], mdl)
def by_ix(info, base, i, mdl):             # i = index inside the shard
    return window(info, base, info[1][i] + 2, 0, mdl * 2 % M, i)
def by_ptr_2(info, base, ptr, needle_len, max_ctx_len):
    return window(info, base, ptr, max_ctx_len * 2 % M, (needle_len + max_ctx_len) * 2 % M)
def by_ix_2(info, base, i, max_ctx_len): return window(info, base, info[1][i] + 2, 0, max_ctx_len * 2 % M, i)
