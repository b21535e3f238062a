"""Brute-force model of find_cnf / count_cnf (exact case: every clause count <= max_clause_freq)."""
import struct, bisect

def load_shard(d, s):
    data = open(f'{d}/tokenized.{s}', 'rb').read()
    sa = sorted(range(0, len(data), 2), key=lambda p: data[p:])
    offs = [o for (o,) in struct.iter_unpack('<Q', open(f'{d}/offset.{s}', 'rb').read())]
    return data, sa, offs

def term_ptrs(data, sa, term):
    """occurrences of term in SA order (may cross doc boundaries, like find())"""
    pat = b''.join(struct.pack('<H', t) for t in term)
    return [p for p in sa if data[p:p + len(pat)] == pat]

def doc_of(offs, p):
    return bisect.bisect_right(offs, p) - 1

def find_cnf_shard(shard, cnf, mdt, global_order=None):
    data, sa, offs = shard
    occ = [[p for term in clause for p in term_ptrs(data, sa, term)] for clause in cnf]
    order = global_order or sorted(range(len(cnf)), key=lambda i: len(occ[i]))   # stable: ties keep cnf order
    d = 2 * mdt                                  # bytes (u16)
    out = []
    for p in occ[order[0]]:                      # anchor occurrences, SA order
        l = r = p; ok = True
        for c in order[1:]:
            Q = sorted(occ[c])
            i = bisect.bisect_left(Q, r)         # Q[i-1] = last q < r, Q[i] = first q >= r
            if i > 0 and Q[i - 1] >= l: continue                 # an occurrence in [l, r): unchanged
            left = i > 0 and Q[i - 1] + d >= l
            right = i < len(Q) and Q[i] <= r + d
            if not (left or right): ok = False; break
            if left: l = Q[i - 1]
            if right: r = Q[i]
            if bisect.bisect_left(offs, l) != bisect.bisect_left(offs, r): ok = False; break   # a doc start (separator) in [l, r)
        if ok: out.append(l)
    return out

def find_cnf(shards, cnf, mdt):
    per = [find_cnf_shard(s, cnf, mdt) for s in shards]
    if any(sum(len(term_ptrs(s[0], s[1], t)) for s in shards for t in cl) == 0 for cl in cnf):
        return {'cnt': 0, 'ptrs_by_shard': []}
    return {'cnt': sum(map(len, per)), 'ptrs_by_shard': per}
