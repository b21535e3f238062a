"""``InfiniGramEngine`` with infini-gram 2.6.0's calls and answers, over anygram's engine.

Code written against ``infini_gram.engine.InfiniGramEngine`` runs unchanged after
changing the import: the constructor and every public method take the same
arguments (names, defaults), validate them the same way and answer the same dicts,
bad arguments included (``{'error': '...'}`` with infini-gram's wording). Several
index directories open as one index, as in infini-gram: their shards are numbered
one after another, counts add up and documents are numbered across them.

Where infini-gram's answer is a defect, the answer here is the exact one; the
README's "differences" list says where (``ntd``'s eos lumping, ``search_docs``
repeating occurrences, the wrapped ``needle_offset`` at a separator, the broken
``get_docs_by_ranks``, ...).

Methods that the core has no call for (``creativity``, ``attribute``, the ``_2``
document windows, ``compute_unigram_counts``, anything over several directories)
are built here from the engine's public methods; each costs a few more calls into
Rust than a native form would.
"""

from __future__ import annotations

import functools
import math
import os
import random
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import _anygram
from ..engine import Engine
from ..errors import InvalidArgumentError, InvalidQueryError
from ..manifest import read_manifest

DOC_FIELDS = ("doc_ix", "doc_len", "disp_len", "needle_offset", "metadata", "token_ids", "blocked")
TOKEN_DTYPES = {"u8": 1, "u16": 2, "u32": 4}
# infini-gram sums this for a token without a unigram log-probability (attribute).
MISSING_UNIGRAM_LOGPROB = -10000.0


class InfiniGramArgumentError(InvalidArgumentError, AssertionError):
    """A constructor argument infini-gram refuses (with an ``assert``, hence also an
    ``AssertionError``, so that ported ``except`` clauses keep working)."""


def _is_int(value: Any) -> bool:
    # infini-gram checks ``type(x) == int``: bool and numpy integers are refused.
    return type(value) is int


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InfiniGramArgumentError(message)


class _Part:
    """One index directory, opened by anygram; where its shards and documents start."""

    def __init__(self, engine: Engine, first_shard: int, first_doc: int):
        self.engine = engine
        self.first_shard = first_shard
        self.first_doc = first_doc
        self.num_shards = engine.num_shards
        self.shard_tokens = [s["num_tokens"] for s in engine.shard_info()]

    def knows(self, ids: Sequence[int]) -> bool:
        """Whether every id can occur in this index. An id outside its vocabulary
        (infini-gram accepts any id of the token width) occurs nowhere."""
        vocab = self.engine.vocab_size
        return all(t < vocab for t in ids)

    def count(self, ids: List[int]) -> int:
        return self.engine.count(ids) if self.knows(ids) else 0


class InfiniGramEngine:
    """infini-gram 2.6.0's ``InfiniGramEngine``, answered by anygram.

    Arguments as infini-gram's. ``index_dir`` is a directory or a list of them.
    ``token_dtype`` (``'u8'``, ``'u16'``, ``'u32'``) must be the index's token width;
    ``eos_token_id`` is the id reported for a continuation at a document's end (an
    index built by anygram must have been built with the same one).
    ``version`` must be 4 (anygram reads infini-gram's v4 layout). ``load_to_ram``,
    the prefetch depths and ``attribution_block_size`` are checked and ignored
    (anygram memory-maps the files and sizes its own work). ``prev_shards_by_index_dir``
    reuses directories already opened by another engine (pass that engine's
    :meth:`get_new_shards_by_index_dir`).
    """

    def __init__(self, index_dir: Iterable[str] | str, eos_token_id: int, vocab_size=65535, version=4,
                 token_dtype='u16', load_to_ram=False, ds_prefetch_depth=1, sa_prefetch_depth=3,
                 od_prefetch_depth=3, bow_ids_path: str = None, attribution_block_size: int = 512,
                 precompute_unigram_logprobs: bool = False, prev_shards_by_index_dir={},
                 max_support=1000, max_clause_freq=50000, max_diff_tokens=100, maxnum=1, max_disp_len=1000,
                 ) -> None:
        if isinstance(index_dir, (str, os.PathLike)):
            index_dir = [index_dir]
        _require(type(index_dir) is list and len(index_dir) > 0
                 and all(isinstance(d, (str, os.PathLike)) for d in index_dir),
                 "index_dir must be a directory or a non-empty list of directories")
        index_dirs = [os.fspath(d) for d in index_dir]
        _require(_is_int(vocab_size) and vocab_size > 0, "vocab_size must be a positive integer")
        _require(_is_int(eos_token_id) and 0 <= eos_token_id < vocab_size,
                 f"eos_token_id must be an integer in range [0, vocab_size={vocab_size})")
        _require(type(load_to_ram) is bool, "load_to_ram must be a boolean")
        _require(_is_int(ds_prefetch_depth) and ds_prefetch_depth >= 0,
                 "ds_prefetch_depth must be a non-negative integer")
        _require(_is_int(sa_prefetch_depth) and sa_prefetch_depth >= ds_prefetch_depth,
                 "sa_prefetch_depth must be an integer >= ds_prefetch_depth")
        _require(_is_int(od_prefetch_depth) and od_prefetch_depth >= 0,
                 "od_prefetch_depth must be a non-negative integer")
        _require(_is_int(attribution_block_size) and attribution_block_size > 0,
                 "attribution_block_size must be a positive integer")
        for name, value in (("max_support", max_support), ("max_clause_freq", max_clause_freq),
                            ("max_diff_tokens", max_diff_tokens), ("maxnum", maxnum),
                            ("max_disp_len", max_disp_len)):
            _require(_is_int(value) and value > 0, f"{name} must be a positive integer")
        if token_dtype not in TOKEN_DTYPES:
            raise InvalidArgumentError(f'Unsupported token dtype: {token_dtype}')
        if version != 4:
            raise InvalidArgumentError(f"version {version!r} is not supported: anygram reads infini-gram's "
                                       "version 4 indexes (version=4)")

        self.max_support = max_support
        self.max_clause_freq = max_clause_freq
        self.max_diff_tokens = max_diff_tokens
        self.maxnum = maxnum
        self.max_disp_len = max_disp_len
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.token_width = TOKEN_DTYPES[token_dtype]
        self.token_id_max = 2 ** (8 * self.token_width) - 1
        self.bow_ids = _read_bow_ids(bow_ids_path)

        self._parts: List[_Part] = []
        self._new_engines: Dict[str, Engine] = {}
        first_shard = first_doc = 0
        for path in index_dirs:
            engine = prev_shards_by_index_dir.get(path) if prev_shards_by_index_dir else None
            if not isinstance(engine, Engine):
                engine = self._open(path)
                self._new_engines[path] = engine
            part = _Part(engine, first_shard, first_doc)
            self._parts.append(part)
            first_shard += part.num_shards
            first_doc += engine.num_documents
        # global shard number -> (part, shard inside the part)
        self._shards: List[Tuple[_Part, int]] = [(p, s) for p in self._parts for s in range(p.num_shards)]
        self._total_doc_cnt = first_doc
        # Asked on every document call: computed once.
        self._tok_cnts = [part.shard_tokens[local] for part, local in self._shards]
        self._ds_sizes = [count * self.token_width for count in self._tok_cnts]
        self._one_part = self._parts[0] if len(self._parts) == 1 else None
        # A C call that answers the count: no Python frame for a constant.
        self.get_total_doc_cnt = functools.partial(int, self._total_doc_cnt)

        self._unigram_logprobs: Dict[int, float] = {}
        if precompute_unigram_logprobs:
            totals: Dict[int, int] = {}
            for s in range(len(self._shards)):
                for token, count in self.compute_unigram_counts(s).items():
                    totals[token] = totals.get(token, 0) + count
            total = sum(totals.values())
            self._unigram_logprobs = {t: math.log(c) - math.log(total) for t, c in totals.items() if c > 0}

    def _open(self, path: str) -> Engine:
        if os.path.isdir(path) and read_manifest(path) is None:
            # infini-gram's own index: the token width and eos id are the caller's to say.
            return Engine.open(path, token_width=self.token_width, eos_token_id=self.eos_token_id)
        engine = Engine.open(path)
        if engine.token_width != self.token_width:
            raise InvalidArgumentError(f"{path} holds u{8 * engine.token_width} tokens, "
                                       f"not u{8 * self.token_width} ones (token_dtype)")
        if engine.eos_token_id != self.eos_token_id:
            raise InvalidArgumentError(f"{path} was built with eos_token_id {engine.eos_token_id}, "
                                       f"not {self.eos_token_id}")
        return engine

    # ---- argument checks: infini-gram's, with its wording -------------------------------------

    def _ids_ok(self, ids: Any, allow_empty: bool = True) -> bool:
        return (type(ids) is list and (allow_empty or len(ids) > 0)
                and all(_is_int(q) and 0 <= q <= self.token_id_max for q in ids))

    def _ids_error(self, name: str, wording: str = "a list") -> Dict[str, str]:
        return {'error': f'{name} must be {wording} of integers in range [0, {self.token_id_max}]'}

    def check_query_ids(self, query_ids: Any, allow_empty: bool) -> bool:
        return self._ids_ok(query_ids, allow_empty)

    def check_cnf(self, cnf: Any) -> bool:
        return (type(cnf) is list and len(cnf) > 0
                and all(type(clause) is list and len(clause) > 0
                        and all(type(term) is list and len(term) > 0 and self._ids_ok(term)
                                for term in clause)
                        for clause in cnf))

    @staticmethod
    def _bad_positive(**values: Any) -> Optional[Dict[str, str]]:
        for name, value in values.items():
            if not (_is_int(value) and value > 0):
                return {'error': f'{name} must be a positive integer'}
        return None

    @staticmethod
    def _bad_non_negative(**values: Any) -> Optional[Dict[str, str]]:
        for name, value in values.items():
            if not (_is_int(value) and value >= 0):
                return {'error': f'{name} must be a non-negative integer'}
        return None

    def _bad_shard(self, s: Any) -> Optional[Dict[str, str]]:
        if not (type(s) is int and 0 <= s < len(self._shards)):
            return {'error': f's must be an integer in range [0, {len(self._shards)})'}
        return None

    def _bad_rank(self, s: Any, rank: Any) -> Optional[Dict[str, str]]:
        if not (type(s) is int and 0 <= s < len(self._shards)):
            return self._bad_shard(s)
        tok_cnt = self._tok_cnts[s]
        if not (type(rank) is int and 0 <= rank < tok_cnt):
            return {'error': f'ptr must be an integer in range [0, {tok_cnt})'}  # sic: infini-gram says ptr
        return None

    def _bad_ptr(self, s: Any, ptr: Any) -> Optional[Dict[str, str]]:
        if not (type(s) is int and 0 <= s < len(self._shards)):
            return self._bad_shard(s)
        ds_size = self._ds_sizes[s]
        if not (type(ptr) is int and 0 <= ptr < ds_size and ptr % 2 == 0):
            return {'error': f'ptr must be an even integer in range [0, {ds_size})'}
        if ptr % self.token_width:
            # infini-gram only checks evenness (and crashes on such a u32 ptr)
            return {'error': f'ptr must be a multiple of the token width {self.token_width}'}
        return None

    def _bad_doc_ix(self, doc_ix: Any) -> Optional[Dict[str, str]]:
        if not (_is_int(doc_ix) and 0 <= doc_ix < self._total_doc_cnt):
            return {'error': f'doc_ix must be an integer in range [0, {self._total_doc_cnt})'}
        return None

    def _ptr_of_rank(self, s: int, rank: int) -> int:
        part, local = self._shards[s]
        return part.engine.get_doc_by_rank(local, rank, 1)['ptr']

    def _tok_cnt(self, s: int) -> int:
        return self._tok_cnts[s]

    # ---- counting ------------------------------------------------------------------------------

    def _count(self, ids: List[int]) -> int:
        return sum(p.count(ids) for p in self._parts)

    def _single(self, ids: Sequence[int]) -> Optional[Engine]:
        """The engine to hand a query to as it is: one directory, ids all in its vocabulary."""
        if len(self._parts) == 1 and self._parts[0].knows(ids):
            return self._parts[0].engine
        return None

    def compute_unigram_counts(self, s: int) -> Dict[int, int]:
        """Occurrences in shard ``s`` of each id below ``vocab_size`` and of the separator."""
        if not (_is_int(s) and 0 <= s < len(self._shards)):
            raise InvalidQueryError(f"s must be an integer in range [0, {len(self._shards)})")
        part, local = self._shards[s]
        known = min(self.vocab_size, part.engine.vocab_size, self.token_id_max)
        counts = {}
        for token in range(self.vocab_size):
            if token < known:
                lo, hi = part.engine.find([token])["segment_by_shard"][local]
                counts[token] = hi - lo
            else:
                counts[token] = 0
        # every document starts with one separator
        counts[self.token_id_max] = part.engine.shard_info()[local]["num_documents"]
        return counts

    def get_new_shards_by_index_dir(self) -> Dict[str, Engine]:
        """The directories this engine opened: pass as ``prev_shards_by_index_dir`` to reuse them."""
        return dict(self._new_engines)

    def find(self, input_ids: List[int]) -> Dict[str, Any]:
        if not self._ids_ok(input_ids):
            return self._ids_error('input_ids')
        cnt, segments = 0, []
        for part in self._parts:
            if part.knows(input_ids):
                r = part.engine.find(input_ids)
                cnt += r['cnt']
                segments += [tuple(seg) for seg in r['segment_by_shard']]
            else:
                # Never occurs. The empty range sits at the start of the known prefix's range
                # (infini-gram places it by byte order: see README, differences).
                prefix = input_ids[:next(i for i, t in enumerate(input_ids) if t >= part.engine.vocab_size)]
                segments += [(lo, lo) for lo, _ in part.engine.find(prefix)['segment_by_shard']]
        return {'cnt': cnt, 'segment_by_shard': segments}

    def count(self, input_ids: List[int]) -> Dict[str, Any]:
        if not self._ids_ok(input_ids):
            return self._ids_error('input_ids')
        return {'count': self._count(input_ids), 'approx': False}

    def _prob(self, prompt_ids: List[int], cont_id: int) -> Dict[str, Any]:
        engine = self._single(prompt_ids + [cont_id])
        if engine is not None:
            r = engine.prob(prompt_ids, cont_id, n=len(prompt_ids) + 1)
            return {'prompt_cnt': r['prompt_cnt'], 'cont_cnt': r['cont_cnt'], 'prob': r['prob']}
        prompt_cnt = self._count(prompt_ids)
        if prompt_cnt == 0:
            return {'prompt_cnt': 0, 'cont_cnt': 0, 'prob': -1.0}
        cont_cnt = self._count(prompt_ids + [cont_id])
        return {'prompt_cnt': prompt_cnt, 'cont_cnt': cont_cnt, 'prob': cont_cnt / prompt_cnt}

    def prob(self, prompt_ids: List[int], cont_id: int) -> Dict[str, Any]:
        """``P(cont_id | prompt_ids)`` from the whole prompt, no backing off (``-1.0`` when
        the prompt never occurs)."""
        if not self._ids_ok(prompt_ids):
            return self._ids_error('prompt_ids', 'a non-empty list')
        if not (_is_int(cont_id) and 0 <= cont_id <= self.token_id_max):
            return {'error': f'cont_id must be an integer in range [0, {self.token_id_max}]'}
        return self._prob(prompt_ids, cont_id)

    def _ntd(self, prompt_ids: List[int], max_support: int) -> Dict[str, Any]:
        engine = self._single(prompt_ids)
        if engine is not None:
            r = engine.ntd(prompt_ids, n=len(prompt_ids) + 1, max_support=max_support)
            return {'prompt_cnt': r['prompt_cnt'], 'result_by_token_id': r['result_by_token_id'],
                    'approx': r['approx']}
        counts = [part.count(prompt_ids) for part in self._parts]
        prompt_cnt = sum(counts)
        if prompt_cnt == 0:
            return {'prompt_cnt': 0, 'result_by_token_id': {}, 'approx': False}
        # infini-gram samples every shard with one stride, the smallest power of two
        # `unit` with prompt_cnt <= unit * max_support over ALL shards. A directory asked
        # with max_support ceil(its count / unit) samples with that same stride; one with
        # fewer occurrences than `unit` takes one middle sample per shard whatever the
        # stride, and max_support 1 gives it that too.
        unit = 1
        while prompt_cnt > unit * max_support:
            unit <<= 1
        merged: Dict[int, int] = {}
        for part, count in zip(self._parts, counts):
            if count == 0:
                continue
            support = -(-count // unit) if count >= unit else 1
            r = part.engine.ntd(prompt_ids, n=len(prompt_ids) + 1, max_support=support)
            for token, entry in r['result_by_token_id'].items():
                merged[token] = merged.get(token, 0) + entry['cont_cnt']
        by_token = {t: {'cont_cnt': c, 'prob': c / prompt_cnt} for t, c in sorted(merged.items())}
        return {'prompt_cnt': prompt_cnt, 'result_by_token_id': by_token, 'approx': unit > 1}

    def ntd(self, prompt_ids: List[int], max_support: Optional[int] = None) -> Dict[str, Any]:
        """The next-token distribution after the whole prompt, no backing off; sampled
        beyond ``max_support`` occurrences (``approx``)."""
        if max_support is None:
            max_support = self.max_support
        bad = self._bad_positive(max_support=max_support)
        if bad:
            return bad
        if not self._ids_ok(prompt_ids):
            return self._ids_error('prompt_ids')
        return self._ntd(prompt_ids, max_support)

    def _suffix_len(self, prompt_ids: List[int]) -> int:
        """The length of the longest suffix of the prompt that occurs (∞-gram)."""
        longest = 0
        for part in self._parts:
            vocab = part.engine.vocab_size
            start = max((i + 1 for i, t in enumerate(prompt_ids) if t >= vocab), default=0)
            if start < len(prompt_ids):
                longest = max(longest, part.engine.infgram_prob(prompt_ids[start:], 0)['suffix_len'])
        return longest

    def infgram_prob(self, prompt_ids: List[int], cont_id: int) -> Dict[str, Any]:
        """``prob`` from the longest suffix of the prompt that occurs (``suffix_len``)."""
        if not self._ids_ok(prompt_ids):
            return self._ids_error('prompt_ids', 'a non-empty list')
        if not (_is_int(cont_id) and 0 <= cont_id <= self.token_id_max):
            return {'error': f'cont_id must be an integer in range [0, {self.token_id_max}]'}
        engine = self._single(prompt_ids + [cont_id])
        if engine is not None:
            return engine.infgram_prob(prompt_ids, cont_id)
        suffix_len = self._suffix_len(prompt_ids)
        result = self._prob(prompt_ids[len(prompt_ids) - suffix_len:], cont_id)
        result['suffix_len'] = suffix_len
        return result

    def infgram_ntd(self, prompt_ids: List[int], max_support: Optional[int] = None) -> Dict[str, Any]:
        """``ntd`` from the longest suffix of the prompt that occurs (``suffix_len``)."""
        if max_support is None:
            max_support = self.max_support
        bad = self._bad_positive(max_support=max_support)
        if bad:
            return bad
        if not self._ids_ok(prompt_ids):
            return self._ids_error('prompt_ids')
        engine = self._single(prompt_ids)
        if engine is not None:
            return engine.infgram_ntd(prompt_ids, max_support=max_support)
        suffix_len = self._suffix_len(prompt_ids)
        result = self._ntd(prompt_ids[len(prompt_ids) - suffix_len:], max_support)
        result['suffix_len'] = suffix_len
        return result

    # ---- CNF -------------------------------------------------------------------------------------

    def _find_cnf(self, cnf: List[List[List[int]]], max_clause_freq: int,
                  max_diff_tokens: int) -> Dict[str, Any]:
        if self._one_part_knows(cnf):
            return self._parts[0].engine.find_cnf(cnf, max_clause_freq, max_diff_tokens)
        if any(sum(self._count(term) for term in clause) == 0 for clause in cnf):
            return {'cnt': 0, 'approx': False, 'ptrs_by_shard': []}
        # infini-gram's per-shard cap is ceil(max_clause_freq / all shards); a directory of
        # k shards asked with cap * k applies the same one.
        per_shard = -(-max_clause_freq // len(self._shards))
        cnt, approx, ptrs_by_shard = 0, False, []
        for part in self._parts:
            # A term with an id outside this directory's vocabulary occurs nowhere in it.
            local = [[t for t in clause if part.knows(t)] for clause in cnf]
            r = None
            if all(local):
                r = part.engine.find_cnf(local, per_shard * part.num_shards, max_diff_tokens)
            if r is None or (not r['ptrs_by_shard'] and part.num_shards):
                # Some clause is absent from this directory (its own answer stops early):
                # nothing survives, but infini-gram still flags subsampling in its shards.
                ptrs_by_shard += [[] for _ in range(part.num_shards)]
                approx |= any(_subsampling_factor(part, s, cnf, per_shard) > 1
                              for s in range(part.num_shards))
                continue
            cnt += r['cnt']
            approx |= r['approx']
            ptrs_by_shard += [list(p) for p in r['ptrs_by_shard']]
        return {'cnt': cnt, 'approx': approx, 'ptrs_by_shard': ptrs_by_shard}

    def _one_part_knows(self, cnf: List[List[List[int]]]) -> bool:
        """Whether one directory holds every shard and every term's ids: its engine answers."""
        return len(self._parts) == 1 and all(self._parts[0].knows(t) for c in cnf for t in c)

    def _cnf_error(self, cnf, max_clause_freq, max_diff_tokens) -> Optional[Dict[str, str]]:
        bad = self._bad_positive(max_clause_freq=max_clause_freq, max_diff_tokens=max_diff_tokens)
        if bad:
            return bad
        if not self.check_cnf(cnf):
            return {'error': 'cnf must be a non-empty, triply-nested list of integers in range '
                             f'[0, {self.token_id_max}]'}
        return None

    def find_cnf(self, cnf: List[List[List[int]]], max_clause_freq: Optional[int] = None,
                 max_diff_tokens: Optional[int] = None) -> Dict[str, Any]:
        max_clause_freq = self.max_clause_freq if max_clause_freq is None else max_clause_freq
        max_diff_tokens = self.max_diff_tokens if max_diff_tokens is None else max_diff_tokens
        bad = self._cnf_error(cnf, max_clause_freq, max_diff_tokens)
        if bad:
            return bad
        return self._find_cnf(cnf, max_clause_freq, max_diff_tokens)

    def count_cnf(self, cnf: List[List[List[int]]], max_clause_freq=None,
                  max_diff_tokens=None) -> Dict[str, Any]:
        max_clause_freq = self.max_clause_freq if max_clause_freq is None else max_clause_freq
        max_diff_tokens = self.max_diff_tokens if max_diff_tokens is None else max_diff_tokens
        bad = self._cnf_error(cnf, max_clause_freq, max_diff_tokens)
        if bad:
            return bad
        if self._one_part_knows(cnf):
            # Counting alone need not list the windows in infini-gram's order: faster.
            return self._parts[0].engine.count_cnf(cnf, max_clause_freq, max_diff_tokens)
        r = self._find_cnf(cnf, max_clause_freq, max_diff_tokens)
        return {'count': r['cnt'], 'approx': r['approx']}

    # ---- documents -------------------------------------------------------------------------------

    def _doc(self, part: _Part, doc: Dict[str, Any]) -> Dict[str, Any]:
        out = {k: doc[k] for k in DOC_FIELDS}
        out['doc_ix'] += part.first_doc
        return out

    def _windows(self, requests: List[Tuple[int, int, int, int]], by_rank: bool) -> List[Dict[str, Any]]:
        """infini-gram's document dicts of windows ``(s, ptr or rank, tokens before, tokens
        from it on)`` (arguments checked): one native call per directory."""
        part = self._one_part
        if part is not None:
            return _anygram.infinigram_windows(part.engine, requests, by_rank, 0)
        out = []
        for s, at, before, after in requests:
            part, local = self._shards[s]
            out += _anygram.infinigram_windows(part.engine, [(local, at, before, after)], by_rank, part.first_doc)
        return out

    def _heads(self, requests: List[Tuple[int, int]]) -> List[Dict[str, Any]]:
        """infini-gram's dicts of the first tokens of documents ``(doc_ix, tokens)``."""
        part = self._one_part
        if part is not None:
            return _anygram.infinigram_heads(part.engine, requests, 0)
        out = []
        for doc_ix, tokens in requests:
            part = next(p for p in reversed(self._parts) if p.first_doc <= doc_ix)
            out += _anygram.infinigram_heads(part.engine, [(doc_ix - part.first_doc, tokens)], part.first_doc)
        return out

    @staticmethod
    def _around(s: int, at: int, max_disp_len: int) -> Tuple[int, int, int, int]:
        """infini-gram's window of ``max_disp_len`` tokens: half before, the rest from ``at`` on."""
        return s, at, max_disp_len // 2, max_disp_len - max_disp_len // 2

    def _doc(self, part: _Part, doc: Dict[str, Any]) -> Dict[str, Any]:
        out = {k: doc[k] for k in DOC_FIELDS}
        out['doc_ix'] += part.first_doc
        return out

    def _doc_by_rank(self, s: int, rank: int, max_disp_len: int) -> Dict[str, Any]:
        return self._windows([self._around(s, rank, max_disp_len)], True)[0]

    def _doc_by_ptr(self, s: int, ptr: int, max_disp_len: int) -> Dict[str, Any]:
        return self._windows([self._around(s, ptr, max_disp_len)], False)[0]

    def search_docs(self, input_ids: List[int], maxnum: Optional[int] = None,
                    max_disp_len: Optional[int] = None) -> Dict[str, Any]:
        """Documents holding ``input_ids``: every occurrence when there are at most
        ``maxnum``, else ``maxnum`` distinct ones drawn at random."""
        maxnum = self.maxnum if maxnum is None else maxnum
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(maxnum=maxnum, max_disp_len=max_disp_len)
        if bad:
            return bad
        if not self._ids_ok(input_ids):
            return self._ids_error('input_ids')
        engine = self._single(input_ids)
        if engine is not None:
            r = engine.search_docs(input_ids, maxnum, max_disp_len)
            part = self._parts[0]
            return {'cnt': r['cnt'], 'approx': False, 'idxs': r['idxs'],
                    'documents': [self._doc(part, d) for d in r['documents']]}
        found = self.find(input_ids)
        cnt = found['cnt']
        idxs = list(range(cnt)) if cnt <= maxnum else sorted(random.sample(range(cnt), maxnum))
        documents = []
        for idx in idxs:
            for s, (lo, hi) in enumerate(found['segment_by_shard']):
                if idx < hi - lo:
                    documents.append(self._doc_by_rank(s, lo + idx, max_disp_len))
                    break
                idx -= hi - lo
        return {'cnt': cnt, 'approx': False, 'idxs': idxs, 'documents': documents}

    def search_docs_cnf(self, cnf: List[List[List[int]]], maxnum: Optional[int] = None,
                        max_disp_len: Optional[int] = None, max_clause_freq: Optional[int] = None,
                        max_diff_tokens: Optional[int] = None) -> Dict[str, Any]:
        """Documents where the CNF query holds (distinct survivors, drawn at random beyond
        ``maxnum``); ``idxs`` rescaled to ``[0, cnt)`` as infini-gram does."""
        maxnum = self.maxnum if maxnum is None else maxnum
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        max_clause_freq = self.max_clause_freq if max_clause_freq is None else max_clause_freq
        max_diff_tokens = self.max_diff_tokens if max_diff_tokens is None else max_diff_tokens
        bad = self._bad_positive(maxnum=maxnum, max_disp_len=max_disp_len)
        if bad:
            return bad
        bad = self._cnf_error(cnf, max_clause_freq, max_diff_tokens)
        if bad:
            return bad
        found = self._find_cnf(cnf, max_clause_freq, max_diff_tokens)
        survivors = [(s, ptr) for s, ptrs in enumerate(found['ptrs_by_shard']) for ptr in ptrs]
        if not survivors:
            return {'cnt': 0, 'approx': False, 'idxs': [], 'documents': []}
        total = len(survivors)
        picks = list(range(total)) if total <= maxnum else sorted(random.sample(range(total), maxnum))
        return {'cnt': found['cnt'], 'approx': found['approx'],
                'idxs': [int(j / total * found['cnt']) for j in picks],
                'documents': [self._doc_by_ptr(*survivors[j], max_disp_len) for j in picks]}

    def get_doc_by_rank(self, s: int, rank: int, max_disp_len: Optional[int] = None) -> Dict[str, Any]:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(max_disp_len=max_disp_len) or self._bad_rank(s, rank)
        return bad or self._windows([self._around(s, rank, max_disp_len)], True)[0]

    def get_docs_by_ranks(self, list_of_s_and_rank: List[Tuple[int, int]],
                          max_disp_len: Optional[int] = None) -> Any:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(max_disp_len=max_disp_len)
        for s, rank in list_of_s_and_rank:
            bad = bad or self._bad_rank(s, rank)
        return bad or self._windows([self._around(s, rank, max_disp_len) for s, rank in list_of_s_and_rank], True)

    def get_doc_by_ptr(self, s: int, ptr: int, max_disp_len: Optional[int] = None) -> Dict[str, Any]:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(max_disp_len=max_disp_len) or self._bad_ptr(s, ptr)
        return bad or self._windows([self._around(s, ptr, max_disp_len)], False)[0]

    def get_docs_by_ptrs(self, list_of_s_and_ptr: List[Tuple[int, int]],
                         max_disp_len: Optional[int] = None) -> Any:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(max_disp_len=max_disp_len)
        for s, ptr in list_of_s_and_ptr:
            bad = bad or self._bad_ptr(s, ptr)
        return bad or self._windows([self._around(s, ptr, max_disp_len) for s, ptr in list_of_s_and_ptr], False)

    def get_doc_by_ix(self, doc_ix: int, max_disp_len: Optional[int] = None) -> Dict[str, Any]:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        part = self._one_part
        # The usual call (one directory, valid ints) straight to the native dict: the checks
        # below cost more than the document.
        if (part is not None and type(doc_ix) is int and type(max_disp_len) is int
                and 0 <= doc_ix < self._total_doc_cnt and max_disp_len > 0):
            return _anygram.infinigram_heads(part.engine, ((doc_ix, max_disp_len),), 0)[0]
        bad = self._bad_positive(max_disp_len=max_disp_len) or self._bad_doc_ix(doc_ix)
        return bad or self._heads([(doc_ix, max_disp_len)])[0]

    def get_docs_by_ixs(self, list_of_doc_ix: List[int], max_disp_len: Optional[int] = None) -> Any:
        max_disp_len = self.max_disp_len if max_disp_len is None else max_disp_len
        bad = self._bad_positive(max_disp_len=max_disp_len)
        for doc_ix in list_of_doc_ix:
            bad = bad or self._bad_doc_ix(doc_ix)
        return bad or self._heads([(ix, max_disp_len) for ix in list_of_doc_ix])

    # The _2 forms: infini-gram's asymmetric window, max_ctx_len tokens before the pointer,
    # needle_len + max_ctx_len from it on (clipped to the document).

    def get_doc_by_rank_2(self, s: int, rank: int, needle_len: int, max_ctx_len: int) -> Dict[str, Any]:
        bad = (self._bad_non_negative(needle_len=needle_len, max_ctx_len=max_ctx_len)
               or self._bad_rank(s, rank))
        return bad or self._windows([(s, rank, max_ctx_len, needle_len + max_ctx_len)], True)[0]

    def get_docs_by_ranks_2(self, requests: List[Tuple[int, int, int, int]]) -> Any:
        for s, rank, needle_len, max_ctx_len in requests:
            bad = (self._bad_non_negative(needle_len=needle_len, max_ctx_len=max_ctx_len)
                   or self._bad_rank(s, rank))
            if bad:
                return bad
        return self._windows([(s, rank, ctx, needle + ctx) for s, rank, needle, ctx in requests], True)

    def get_doc_by_ptr_2(self, s: int, ptr: int, needle_len: int, max_ctx_len: int) -> Dict[str, Any]:
        bad = self._bad_non_negative(needle_len=needle_len, max_ctx_len=max_ctx_len) or self._bad_ptr(s, ptr)
        return bad or self._windows([(s, ptr, max_ctx_len, needle_len + max_ctx_len)], False)[0]

    def get_docs_by_ptrs_2(self, requests: List[Tuple[int, int, int, int]]) -> Any:
        for s, ptr, needle_len, max_ctx_len in requests:
            bad = (self._bad_non_negative(needle_len=needle_len, max_ctx_len=max_ctx_len)
                   or self._bad_ptr(s, ptr))
            if bad:
                return bad
        return self._windows([(s, ptr, ctx, needle + ctx) for s, ptr, needle, ctx in requests], False)

    def get_doc_by_ix_2(self, doc_ix: int, max_ctx_len: int) -> Dict[str, Any]:
        part = self._one_part
        if (part is not None and type(doc_ix) is int and type(max_ctx_len) is int
                and 0 <= doc_ix < self._total_doc_cnt and max_ctx_len >= 0):
            return _anygram.infinigram_heads(part.engine, ((doc_ix, max_ctx_len),), 0)[0]
        bad = self._bad_non_negative(max_ctx_len=max_ctx_len) or self._bad_doc_ix(doc_ix)
        return bad or self._heads([(doc_ix, max_ctx_len)])[0]

    def get_docs_by_ixs_2(self, requests: List[Tuple[int, int]]) -> Any:
        for doc_ix, max_ctx_len in requests:
            bad = self._bad_non_negative(max_ctx_len=max_ctx_len) or self._bad_doc_ix(doc_ix)
            if bad:
                return bad
        return self._heads([(doc_ix, max_ctx_len) for doc_ix, max_ctx_len in requests])

    def get_total_doc_cnt(self) -> int:
        """The number of documents (replaced on the instance by a C call answering it)."""
        return self._total_doc_cnt

    # ---- creativity and attribution -------------------------------------------------------------

    def _longest_prefix_ends(self, input_ids: List[int]) -> List[int]:
        """For each position l, l + the length of the longest prefix of input_ids[l:] that
        occurs. These ends never decrease, so one forward pass needs under 2 * len counts."""
        ends, r = [], 0
        for l in range(len(input_ids)):
            r = max(r, l)
            while r < len(input_ids) and self._count(input_ids[l:r + 1]) > 0:
                r += 1
            ends.append(r)
        return ends

    def creativity(self, input_ids: List[int]) -> Dict[str, Any]:
        """``rs[l]``: where the longest n-gram that starts at ``l`` and occurs ends."""
        if not self._ids_ok(input_ids):
            return self._ids_error('input_ids')
        if all(p.knows(input_ids) for p in self._parts):
            # Occurring in the union is occurring in some directory: the largest end wins.
            if self._one_part is not None:
                return self._one_part.engine.creativity(input_ids)
            ends = [p.engine.creativity(input_ids)['rs'] for p in self._parts]
            return {'rs': [max(column) for column in zip(*ends)] if input_ids else []}
        return {'rs': self._longest_prefix_ends(input_ids)}

    def _unigram_logprob_sum(self, span: Sequence[int]) -> float:
        """infini-gram's sum, added left to right in doubles as its C++ does (not ``sum()``,
        which compensates from Python 3.12 on)."""
        if not self._unigram_logprobs:  # every token missing: exact, as -10000 * k is
            return MISSING_UNIGRAM_LOGPROB * len(span)
        total, get = 0.0, self._unigram_logprobs.get
        for token in span:
            total += get(token, MISSING_UNIGRAM_LOGPROB)
        return total

    def attribute(self, input_ids: List[int], delim_ids: Iterable[int], min_len: int, max_cnt: int,
                  enforce_bow: bool) -> Dict[str, Any]:
        """Spans of ``input_ids`` that occur at most ``max_cnt`` times and are at least
        ``min_len`` long (maximal from each start, cut after a delimiter, backed off to
        a beginning of word with ``enforce_bow``), each with where it occurs."""
        if not self._ids_ok(input_ids):
            return self._ids_error('input_ids')
        if not self._ids_ok(delim_ids):
            return self._ids_error('delim_ids')
        bad = self._bad_non_negative(min_len=min_len) or self._bad_positive(max_cnt=max_cnt)
        if bad:
            return bad
        if type(enforce_bow) is not bool:
            return {'error': 'enforce_bow must be a boolean'}
        engine = self._single(list(input_ids) + list(delim_ids))
        if engine is not None:
            found = engine.attribute(input_ids, list(delim_ids), min_len, max_cnt,
                                     [t for t in sorted(self.bow_ids) if t < engine.vocab_size]
                                     if enforce_bow else None)['spans']
            for span in found:  # infini-gram's key order: the sum before the docs
                docs = span.pop('docs')
                span['unigram_logprob_sum'] = self._unigram_logprob_sum(input_ids[span['l']:span['r']])
                span['docs'] = docs
            return {'spans': found}
        n, delims = len(input_ids), set(delim_ids)
        ends = self._longest_prefix_ends(input_ids)
        spans, last_r = [], 0
        for l in range(n):
            if enforce_bow and input_ids[l] not in self.bow_ids:
                continue
            length = ends[l] - l
            for pos in range(l, l + length - 1):  # stop after the first delimiter
                if input_ids[pos] in delims:
                    length = pos - l + 1
                    break
            if enforce_bow:  # end where a word begins
                while length > 0 and l + length < n and input_ids[l + length] not in self.bow_ids:
                    length -= 1
            if length < min_len:
                continue
            span = input_ids[l:l + length]
            found = self.find(span)
            if found['cnt'] > max_cnt or l + length <= last_r:
                continue
            last_r = l + length
            docs = [{'s': s, 'ptr': self._ptr_of_rank(s, rank)}
                    for s, (lo, hi) in enumerate(found['segment_by_shard']) for rank in range(lo, hi)]
            spans.append({'l': l, 'r': l + length, 'length': length, 'count': found['cnt'],
                          'unigram_logprob_sum': self._unigram_logprob_sum(span), 'docs': docs})
        return {'spans': spans}


def _subsampling_factor(part: _Part, local_shard: int, cnf: List[List[List[int]]], per_shard: int) -> int:
    """infini-gram's extrapolation factor of a CNF query in one shard: the product over
    clauses of (occurrences // kept) for each clause subsampled to ``per_shard``."""
    factor = 1
    for clause in cnf:
        lengths = []
        for term in clause:
            if part.knows(term):
                lo, hi = part.engine.find(term)['segment_by_shard'][local_shard]
                lengths.append(hi - lo)
            else:
                lengths.append(0)
        n = sum(lengths)
        if n > per_shard:
            kept = sum(-(-length * per_shard // n) for length in lengths)
            factor *= n // kept
    return factor


def _read_bow_ids(path: Optional[str]) -> set:
    """The beginning-of-word token ids (one integer a line), for ``attribute``."""
    if path is None:
        return set()
    ids = set()
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                ids.add(int(line.strip()))
            except ValueError:
                raise InvalidArgumentError(f"{path}, line {number}: {line.strip()!r} is not a token id") \
                    from None
    return ids
