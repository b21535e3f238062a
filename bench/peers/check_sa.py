#!/usr/bin/env python3
"""Brute-force check of an infini-gram table.N against a plain Python suffix sort.

    python3 check_sa.py INDEX_DIR TOKEN_WIDTH [SHARD] [--adjacent]

Sorts all byte offsets that are multiples of TOKEN_WIDTH by memcmp of the suffix
bytes tokenized.N[off:] (to the END OF THE FILE; a suffix that is a prefix of
another sorts first), with functools.cmp_to_key, and compares with table.N read
with ptr_size = ceil(log2(len(tokenized))/8). Prints a JSON summary.
--adjacent: instead of sorting, prove the order in linear time (permutation check +
every adjacent pair strictly increasing), for large files.
"""
import functools
import json
import math
import os
import sys


def _cmp(ds, n, a, b):
    """memcmp order of ds[a:] vs ds[b:]; a suffix that is a prefix of the other is smaller."""
    k = 64
    while True:
        sa, sb = ds[a:a + k], ds[b:b + k]
        if sa != sb:
            return -1 if sa < sb else 1
        a_end, b_end = a + k >= n, b + k >= n
        if a_end or b_end:  # equal so far and at least one suffix is exhausted
            return (b_end - a_end) if a_end != b_end else 0  # exhausted (shorter) one first
        k *= 2


def brute_force_sa(ds, width):
    n = len(ds)
    return sorted(range(0, n, width), key=functools.cmp_to_key(lambda a, b: _cmp(ds, n, a, b)))


def read_table(path, ptr_size):
    raw = open(path, 'rb').read()
    return [int.from_bytes(raw[i:i + ptr_size], 'little') for i in range(0, len(raw), ptr_size)], len(raw)


def check(index_dir, width, shard=0, adjacent_only=False):
    ds = open(os.path.join(index_dir, f'tokenized.{shard}'), 'rb').read()
    n = len(ds)
    tok_cnt = n // width
    table_bytes = os.path.getsize(os.path.join(index_dir, f'table.{shard}'))
    expected_ptr = math.ceil(math.log2(n) / 8)
    ptr_size = table_bytes / tok_cnt
    res = dict(ds_size=n, tok_cnt=tok_cnt, table_bytes=table_bytes, table_bytes_over_tok_cnt=ptr_size,
               ceil_log2_ds_over_8=expected_ptr)
    ps = expected_ptr
    table, _ = read_table(os.path.join(index_dir, f'table.{shard}'), ps)
    res['table_entries_at_expected_ptr'] = len(table)
    res['distinct_entries'] = len(set(table))
    res['all_multiples_of_width'] = all(t % width == 0 for t in table)
    res['max_entry'] = max(table) if table else None
    if adjacent_only:
        # linear-time proof: table is a permutation of all token offsets and each
        # adjacent pair is strictly increasing by memcmp (shorter-first) order
        res['is_permutation'] = sorted(table) == list(range(0, n, width))
        bad = [i for i in range(len(table) - 1) if _cmp(ds, n, table[i], table[i + 1]) >= 0]
        res['adjacent_inversions'] = len(bad)
        res['exact_match'] = res['is_permutation'] and not bad
        return res
    bf = brute_force_sa(ds, width)
    res['exact_match'] = (table == bf)
    if table != bf:
        mism = [i for i in range(min(len(table), len(bf))) if table[i] != bf[i]]
        res['first_mismatch_rank'] = mism[0] if mism else None
        res['num_mismatched_ranks'] = len(mism) + abs(len(table) - len(bf))
        missing = set(bf) - set(table)
        res['missing_offsets_count'] = len(missing)
        res['missing_offsets_sample'] = sorted(missing)[:10]
        from collections import Counter
        dup = [o for o, c in Counter(table).items() if c > 1]
        res['duplicated_offsets_count'] = len(dup)
        res['duplicated_offsets_range'] = [min(dup), max(dup)] if dup else None
    return res


if __name__ == '__main__':
    adj = '--adjacent' in sys.argv
    argv = [a for a in sys.argv if a != '--adjacent']
    d, w = argv[1], int(argv[2])
    s = int(argv[3]) if len(argv) > 3 else 0
    print(json.dumps(check(d, w, s, adjacent_only=adj)))
