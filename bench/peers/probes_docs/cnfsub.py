"""Model of find_cnf with clause subsampling (max_clause_freq). Options explored via kwargs."""
import bisect, math
from cnfmodel import term_ptrs

class MT19937:
    def __init__(self, seed):
        self.mt = [0] * 624; self.mt[0] = seed & 0xffffffff; self.i = 624
        for i in range(1, 624):
            self.mt[i] = (1812433253 * (self.mt[i - 1] ^ (self.mt[i - 1] >> 30)) + i) & 0xffffffff
    def __call__(self):
        if self.i >= 624:
            mt = self.mt
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908b0df if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]; self.i += 1
        y ^= y >> 11; y ^= (y << 7) & 0x9d2c5680; y ^= (y << 15) & 0xefc60000; y ^= y >> 18
        return y & 0xffffffff

def uniform_int(rng, a, b):
    """libstdc++ std::uniform_int_distribution<U64>(a, b) driven by a 32-bit engine (b - a < 2**32 - 1)."""
    urange = b - a
    scaling = 0xFFFFFFFF // (urange + 1); past = (urange + 1) * scaling
    while True:
        x = rng()
        if x < past: return a + x // scaling

def shard_cnf(shard, cnf, mdt, mcf, S, rng_scope='clause', rngs=None, order_by='cnt'):
    data, sa, offs = shard
    limit = -(-mcf // S)                         # ceil(mcf / num_shards)
    rng = MT19937(19260817) if rng_scope == 'shard' else rngs
    occ = []; ratios = []; cnts = []
    for clause in cnf:
        if rng_scope == 'clause': rng = MT19937(19260817)
        segs = [term_ptrs(data, sa, t) for t in clause]          # each term's SA-ordered occurrences
        cnt = sum(map(len, segs)); cnts.append(cnt)
        ratio = 1
        if cnt > limit:
            new = []
            for sg in segs:
                n = len(sg); k = -(-n * limit // cnt)       # ceil(n * limit / cnt)
                st = uniform_int(rng, 0, n - k)
                new.append(sg[st:st + k])
            kept = sum(map(len, new)); segs = new
            ratio = cnt // kept
        ratios.append(ratio)
        occ.append([p for sg in segs for p in sg])
    order = sorted(range(len(cnf)), key=lambda i: cnts[i] if order_by == 'cnt' else len(occ[i]))
    d = 2 * mdt; out = []
    for p in occ[order[0]]:
        l = r = p; ok = True
        for c in order[1:]:
            Q = sorted(occ[c]); i = bisect.bisect_left(Q, r)
            if i > 0 and Q[i - 1] >= l: continue
            left = i > 0 and Q[i - 1] + d >= l
            right = i < len(Q) and Q[i] <= r + d
            if not (left or right): ok = False; break
            if left: l = Q[i - 1]
            if right: r = Q[i]
            if bisect.bisect_left(offs, l) != bisect.bisect_left(offs, r): ok = False; break
        if ok: out.append(l)
    return out, math.prod(ratios), ratios

def find_cnf(shards, cnf, mdt, mcf, **kw):
    if any(sum(len(term_ptrs(s[0], s[1], t)) for s in shards for t in cl) == 0 for cl in cnf):
        return {'cnt': 0, 'approx': False, 'ptrs_by_shard': []}
    per = [shard_cnf(s, cnf, mdt, mcf, len(shards), **kw) for s in shards]
    return {'cnt': sum(len(o) * f for o, f, _ in per), 'approx': any(f > 1 for o, f, _ in per),
            'ptrs_by_shard': [o for o, _, _ in per]}
