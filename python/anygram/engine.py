"""``anygram.Engine``: an opened index.

The query methods (``count``, ``find``, ``prob``, ``ntd``, ``infgram_prob``,
``infgram_ntd`` and their ``*_batch`` forms) are implemented in Rust
(:mod:`anygram._anygram`) and take token ids (a list or 1-D numpy array) or a
string, which is tokenized with the index's tokenizer. They release the GIL;
batch forms run on all cores.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from . import _anygram
from . import cnf as cnf_text
from .errors import (
    CorruptIndexError,
    IndexNotFoundError,
    InvalidArgumentError,
    InvalidQueryError,
    TokenizerMismatchError,
)
from .manifest import read_manifest, stored_tokenizer
from .tokenizer import Tokenizer, file_sha256


URL_SCHEMES = ("s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https")

#: Largest manifest or tokenizer file read from object storage.
_MAX_SMALL_FILE = 256 << 20


def is_url(path: str) -> bool:
    """Whether ``path`` names an index in object storage (``s3://``, ``gs://``,
    ``az://``, ``http(s)://`` ...) rather than a local directory."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def _remote_tokenizer(url: str, manifest: Dict[str, Any], given: Optional[str]) -> Optional[Tokenizer]:
    """The tokenizer of an index at ``url``: the stored one (a plain file name
    beside the manifest, read through the core and checked against the manifest's
    sha256), or ``given`` when it has the same content."""
    info = manifest.get("tokenizer")
    if info is None:
        if given is not None:
            raise TokenizerMismatchError(
                f"{url}: the index was built on UTF-8 bytes without a tokenizer, but tokenizer {given} was given")
        return Tokenizer(None) if manifest.get("token_width") == 1 else None
    # The core's manifest type has checked that the name is a plain file name (no "/" can
    # lead elsewhere in the bucket) and that the sha256 is well formed.
    expected = info["sha256"]
    if given is not None:
        actual = file_sha256(given)
        if actual != expected:
            raise TokenizerMismatchError(
                f"tokenizer {given} (sha256 {actual}) is not the one index {url} was built with (sha256 {expected})")
        return Tokenizer(given)
    where = f"{url}/{info['file']}"
    data = _anygram.read_index_file(where, "the index's tokenizer", _MAX_SMALL_FILE)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CorruptIndexError(
            f"{where}: the stored tokenizer has sha256 {actual}, but the manifest records {expected}: "
            "the file was changed after the build")
    # A private directory that lives as long as the process (the tokenizer keeps its path).
    local = os.path.join(tempfile.mkdtemp(prefix="anygram-tokenizer-"), "tokenizer.json")
    with open(local, "wb") as f:
        f.write(data)
    return Tokenizer(local)


class Engine(_anygram.Engine):
    """A memory-mapped index. Open it with :meth:`Engine.open`.

    Result fields follow infini-gram: ``prob`` returns ``prompt_cnt``, ``cont_cnt``,
    ``prob`` (−1.0 when the context never occurs) and ``suffix_len``; ``ntd``
    returns ``prompt_cnt``, ``result_by_token_id`` ({token: {"cont_cnt", "prob"}}),
    ``approx`` and ``suffix_len``.
    """

    tokenizer: Optional[Tokenizer]
    manifest: Optional[Dict[str, Any]]

    @classmethod
    def open(
        cls,
        path: str,
        tokenizer: Optional[str] = None,
        token_width: Optional[int] = None,
        vocab_size: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        resident_mem: Optional[int] = None,
        accelerator: bool = True,
        verbatim: bool = False,
        sample_keys: bool = True,
        search_path: str = "adaptive",
        cnf_memo_bytes: Optional[int] = None,
    ) -> "Engine":
        """Opens the index in directory ``path``.

        An index built by anygram carries a manifest (token width, vocabulary,
        tokenizer); ``tokenizer`` may then be left out, and if given must be the same
        ``tokenizer.json`` (by content) as the one the index was built with.

        An index built by infini-gram has no manifest: ``token_width`` (1, 2, 4) is
        inferred from the file sizes when not given; ``vocab_size`` defaults to every
        id but the separator; ``eos_token_id`` (reported as the token after a
        document's end) defaults to the tokenizer's end-of-text token, else to the
        separator value.

        String queries are tokenized as infini-gram's service does (a leading space for
        GPT-2/OLMo/NeoX-style byte-level BPE, Llama's lone leading ``▁`` dropped:
        :meth:`Tokenizer.encode_query`); ``verbatim=True`` tokenizes them as they are.

        Shards with a search accelerator (``accel.{s}``, see :mod:`anygram.accel`)
        search through it (``accelerator=False``: never); ``resident_mem`` is the RAM,
        in bytes for all shards, that its top levels may take (default: 1% of the
        index, always at least each tree's root). ``search_path``: ``"adaptive"`` (the
        tree while a shard's reads are slow or remote, the plain binary search inside
        the tree's bracket once a local shard's reads come from RAM), ``"tree"``
        (always: a benchmark of rounds) or ``"narrowed"``. Without an accelerator a
        local shard samples keys in the background after open (``sample_keys=False``:
        not; searches are then plain binary searches). ``cnf_memo_bytes``: RAM for the
        sorted occurrences of frequent CNF clauses (1,024 or more kept occurrences),
        kept for the next CNF query that has the same clause (default 64 MiB; 0: none
        are kept). Raises :class:`IndexNotFoundError`,
        :class:`CorruptIndexError`, :class:`TokenizerMismatchError`.
        """
        path = os.fspath(path)
        remote = is_url(path)
        if remote:
            path = path.rstrip("/")
        elif not os.path.isdir(path):
            raise IndexNotFoundError(f"{path}: no such index directory")
        # The core's typed manifest, read through its storage layer (local or remote).
        manifest = read_manifest(path)
        tok: Optional[Tokenizer] = None
        # A stored tokenizer in object storage is read after the core's open, whose one
        # batch of GETs after the manifest's also fetches it: 2 round trips in all.
        read_tokenizer_after_open = (remote and manifest is not None and tokenizer is None
                                     and manifest.get("tokenizer") is not None)
        if read_tokenizer_after_open:
            pass
        elif manifest is not None and remote:
            # The index is in object storage: its tokenizer is read through the core
            # into a local copy (the tokenizer library reads files), checked by hash.
            tok = _remote_tokenizer(path, manifest, tokenizer)
        elif manifest is not None:
            stored = stored_tokenizer(path, manifest)
            if stored is None:
                if tokenizer is not None:
                    raise TokenizerMismatchError(
                        f"{path}: the index was built on UTF-8 bytes without a tokenizer, "
                        f"but tokenizer {tokenizer} was given"
                    )
                tok = Tokenizer(None) if manifest.get("token_width") == 1 else None
            else:
                stored_path, expected = stored
                if tokenizer is not None:
                    given = file_sha256(tokenizer)
                    if given != expected:
                        raise TokenizerMismatchError(
                            f"tokenizer {tokenizer} (sha256 {given}) is not the one index {path} "
                            f"was built with (sha256 {expected})"
                        )
                    tok = Tokenizer(tokenizer)
                else:
                    if not os.path.isfile(stored_path):
                        raise CorruptIndexError(f"{stored_path}: the index's tokenizer file is missing")
                    actual = file_sha256(stored_path)
                    if actual != expected:
                        raise CorruptIndexError(
                            f"{stored_path}: the stored tokenizer has sha256 {actual}, but the manifest "
                            f"records {expected}: the file was changed after the build"
                        )
                    tok = Tokenizer(stored_path)
        elif tokenizer is not None:
            tok = Tokenizer(tokenizer)
            if eos_token_id is None:
                eos_token_id = tok.eos_token_id
            if vocab_size is None:
                vocab_size = tok.vocab_size
        if not isinstance(verbatim, bool):
            raise InvalidArgumentError(f"verbatim must be True or False, got {verbatim!r}")
        encoder = None if tok is None else (tok.encode if verbatim else tok.encode_query)
        if read_tokenizer_after_open:
            # The tokenizer, read below, encodes every text query.
            def encoder(text: Any) -> Any:
                tokenizer = engine.tokenizer
                return tokenizer.encode(text) if verbatim else tokenizer.encode_query(text)

        if resident_mem is not None and (
            isinstance(resident_mem, bool) or not isinstance(resident_mem, int) or resident_mem < 0
        ):
            raise InvalidArgumentError(f"resident_mem must be a number of bytes >= 0, got {resident_mem!r}")
        engine = cls(path, token_width, vocab_size, eos_token_id, encoder, resident_mem, bool(accelerator),
                     bool(sample_keys), search_path, cnf_memo_bytes)
        if read_tokenizer_after_open:
            tok = _remote_tokenizer(path, manifest, None)
        if tok is not None and tok.vocab_size > engine.vocab_size:
            raise TokenizerMismatchError(
                f"tokenizer {tok.name} has {tok.vocab_size} tokens but the index holds ids below "
                f"{engine.vocab_size}"
            )
        engine.tokenizer = tok
        engine.manifest = manifest
        engine.verbatim = verbatim
        return engine

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The native constructor did the work; these are filled in by ``open``.
        self.tokenizer = None
        self.manifest = None
        self.verbatim = False

    def search_docs(self, query, maxnum: int = 1, max_disp_len: int = 1000, seed: Optional[int] = None):
        """Documents holding the n-gram ``query``: ``{"cnt", "approx", "idxs", "documents"}``.

        Every occurrence when there are at most ``maxnum``, else ``maxnum`` distinct
        occurrences drawn uniformly at random (``seed`` makes the draw repeatable;
        infini-gram draws with replacement and may repeat one). Each document has
        infini-gram's fields (``doc_ix`` global over shards, ``doc_len``, ``disp_len``,
        ``needle_offset`` (the match inside ``token_ids``), ``metadata`` (the stored JSON
        line), ``token_ids`` (at most ``max_disp_len`` tokens around the match),
        ``blocked``), plus ``offset`` (the match inside the document), ``shard``, ``ptr``
        and, when the index has a tokenizer, ``text``."""
        result = super().search_docs(query, maxnum, max_disp_len, seed)
        for doc in result["documents"]:
            self._add_text(doc)
        return result

    def cnf(self, query) -> List[List[List[int]]]:
        """A CNF query as clauses of n-grams of token ids. Accepts a string (parsed by
        :func:`anygram.cnf.parse`: `` AND `` separates clauses and `` OR `` separates the
        n-grams of a clause, OR binding tighter, as in infini-gram), or a list of clauses, each a list of
        n-grams given as strings or token ids."""
        if isinstance(query, str):
            query = cnf_text.parse(query)
        try:
            clauses = [list(clause) for clause in query]
        except TypeError:
            raise InvalidQueryError("a CNF query is a string or a list of clauses, each a list of n-grams") from None
        out = []
        for c, clause in enumerate(clauses):
            terms = []
            for term in clause:
                if isinstance(term, str):
                    term = self.tokenize_query(term)
                # Ids are checked (integers in the vocabulary, no casts) by the bindings.
                terms.append(term)
            out.append(terms)
        return out

    def count_cnf(self, query, max_clause_freq: int = 50000, max_diff_tokens: int = 100) -> Dict[str, Any]:
        """Occurrences of a CNF query (see :meth:`cnf`), all clauses within
        ``max_diff_tokens`` tokens in one document: ``{"count", "approx"}``."""
        return super().count_cnf(self.cnf(query), max_clause_freq, max_diff_tokens)

    def find_cnf(self, query, max_clause_freq: int = 50000, max_diff_tokens: int = 100) -> Dict[str, Any]:
        """Where a CNF query holds: ``{"cnt", "approx", "ptrs_by_shard"}``."""
        return super().find_cnf(self.cnf(query), max_clause_freq, max_diff_tokens)

    def search_docs_cnf(self, query, maxnum: int = 1, max_disp_len: int = 1000, max_clause_freq: int = 50000,
                        max_diff_tokens: int = 100, seed: Optional[int] = None) -> Dict[str, Any]:
        """Documents where a CNF query holds (fields as :meth:`search_docs`)."""
        result = super().search_docs_cnf(self.cnf(query), maxnum, max_disp_len, max_clause_freq,
                                         max_diff_tokens, seed)
        for doc in result["documents"]:
            self._add_text(doc)
        return result

    def get_doc_by_ix(self, doc_ix: int, max_disp_len: int = 1000) -> Dict[str, Any]:
        """Document ``doc_ix`` (global over shards): its first ``max_disp_len`` tokens,
        metadata and (with a tokenizer) text."""
        return self._add_text(super().get_doc_by_ix(doc_ix, max_disp_len))

    def get_docs_by_ixs(self, doc_ixs: Sequence[int], max_disp_len: int = 1000) -> List[Dict[str, Any]]:
        """Many documents by index (on all cores)."""
        return [self._add_text(d) for d in super().get_docs_by_ixs(list(doc_ixs), max_disp_len)]

    def get_doc_by_ptr(self, shard: int, ptr: int, max_disp_len: int = 1000) -> Dict[str, Any]:
        """The document holding byte ``ptr`` of shard ``shard``, with a window around it."""
        return self._add_text(super().get_doc_by_ptr(shard, ptr, max_disp_len))

    def get_docs_by_ptrs(self, shard_ptrs: Sequence[Any], max_disp_len: int = 1000) -> List[Dict[str, Any]]:
        """Many documents by ``(shard, ptr)`` pairs (on all cores)."""
        # Each shard and pointer is range-checked by the bindings (no int() casts).
        return [self._add_text(d) for d in super().get_docs_by_ptrs(shard_ptrs, max_disp_len)]

    def count_reads(self, query, method: str = "count", token=None, max_support: int = 1000) -> Dict[str, Any]:
        """Runs ``method`` (``count``, ``prob``, ``infgram_prob``, ``ntd``, ``infgram_ntd``
        or ``search_docs``) on ``query`` (ids or a string; ``token`` for the two probs)
        while counting what it read: ``count`` (the answer's count, else the context's);
        ``rounds``, the dependent reads by shard (a round waits for the one before: a
        tree node, then the pointers, then the text); ``pages``, the distinct 4 KiB
        pages touched by file. For benchmarks of large indexes."""
        return _anygram.count_reads(self, query, method, token, max_support)

    def score(self, tokens, sparse: bool = True, top: bool = False, max_support: int = 1000,
              doc_start: bool = False) -> Dict[str, Any]:
        """The ∞-gram probability of every token of a text (ids or a string) given the
        tokens before it, in one left-to-right pass: numpy arrays ``prob`` (float64,
        exactly ``infgram_prob(tokens[:i], tokens[i])["prob"]``), ``suffix_len``,
        ``prompt_cnt``, ``cont_cnt`` and ``sparse`` (the ∞-gram distribution at
        position i has exactly one token). With ``top=True`` also the mode of that
        distribution, ``top_token`` (−1 where it is empty), ``top_prob`` and
        ``top_approx`` (sampled beyond ``max_support`` occurrences, as ``infgram_ntd``).

        With ``doc_start=True`` the text is taken as a whole document: contexts start
        with the document separator, so the first tokens are predicted from the
        documents that start the same way (a context that reaches the start counts
        it as one token of ``suffix_len``), backing off as usual. Without it the first
        token's context is empty (every token position of the index). A string is a whole
        text: it is tokenized as the build encodes a document (:meth:`tokenize`, no query
        leading space)."""
        if isinstance(tokens, str) and self.tokenizer is not None:
            tokens = self.tokenize(tokens)
        return _anygram.score(self, tokens, sparse, top, max_support, doc_start)

    def score_batch(self, texts, sparse: bool = True, top: bool = False,
                    max_support: int = 1000, doc_start: bool = False) -> List[Dict[str, Any]]:
        """:meth:`score` of many texts on all cores: a list of dicts (strings tokenized as
        :meth:`score` tokenizes them)."""
        if self.tokenizer is not None and isinstance(texts, (list, tuple)) and \
                any(isinstance(text, str) for text in texts):
            texts = [self.tokenize(text) if isinstance(text, str) else text for text in texts]
        return _anygram.score_batch(self, texts, sparse, top, max_support, doc_start)

    def ntd_dense(self, contexts, max_support: int = 1000, vocab_size: Optional[int] = None) -> Dict[str, Any]:
        """The ∞-gram next-token distribution after each context as a dense float32
        ``probs`` array of shape ``[len(contexts), vocab_size]`` (default: the index's
        vocabulary; give the model's when it is larger), with ``suffix_len``,
        ``prompt_cnt``, ``sparse`` and ``approx`` per row: ready for :func:`anygram.mix`.
        Document ends count as ``eos_token_id``."""
        return _anygram.ntd_dense(self, contexts, max_support, vocab_size)

    # --- infini-gram's creativity and attribute (anygram::attribution in the core) ---

    def creativity(self, tokens) -> Dict[str, Any]:
        """``{"rs"}``: for each position ``l`` of ``tokens`` (ids or text), where the longest
        n-gram that starts at ``l`` and occurs in the corpus ends (infini-gram's ``creativity``;
        one search of the rest of the text per start)."""
        return {"rs": _anygram.creativity(self, tokens).tolist()}

    def attribute(self, tokens, delim_ids: Sequence[int] = (), min_len: int = 1, max_cnt: int = 10,
                  bow_ids: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """``{"spans"}``: the spans of ``tokens`` that occur at most ``max_cnt`` times and are at
        least ``min_len`` long (the longest occurring n-gram from each start, cut after the first
        of ``delim_ids``; with ``bow_ids``, starting and ending where a word begins), each with
        ``l``, ``r``, ``length``, ``count`` and ``docs`` (``{"s": shard, "ptr": byte offset}`` of
        every occurrence): infini-gram's ``attribute`` with ``enforce_bow`` as ``bow_ids``."""
        return {"spans": _anygram.attribute(self, tokens, list(delim_ids), min_len, max_cnt,
                                            None if bow_ids is None else list(bow_ids))}

    # --- Kneser-Ney smoothing and sampling (anygram.smoothing in the core) ---

    def kneser_ney(self, document_ends: str = "eos") -> "_anygram.KneserNey":
        """The interpolated Kneser-Ney model of this index (tokengrams 0.3.3's definition:
        see ``anygram::smoothing``), made on first use and kept: its smoothed unigram
        distribution and order-1 discount cost one pass over the distinct tokens.
        ``document_ends``: ``"eos"`` counts a document end as ``eos_token_id`` (as
        :meth:`ntd`), ``"skip"`` as no token at all (tokengrams' single token stream)."""
        models = self.__dict__.setdefault("_kneser_ney", {})
        if document_ends not in models:
            models[document_ends] = _anygram.KneserNey(self, document_ends)
        return models[document_ends]

    @staticmethod
    def _last(context, n: Optional[int]):
        if n is None:
            return context
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidQueryError(f"n must be a positive integer or None, not {n!r}")
        return context[len(context) - (n - 1):] if n > 1 else context[:0]

    def smoothed_probs(self, context, n: Optional[int] = None, document_ends: str = "eos"):
        """The Kneser-Ney distribution of the token after ``context`` (its last ``n - 1``
        tokens when ``n`` is given, else all of it): float64 array of ``vocab_size``."""
        if isinstance(context, str):
            context = self.tokenize_query(context)
        return self.kneser_ney(document_ends).probs(self, self._last(context, n))

    def smoothed_probs_batch(self, contexts, n: Optional[int] = None, document_ends: str = "eos"):
        """:meth:`smoothed_probs` of many contexts on all cores: ``[len(contexts), vocab_size]``."""
        contexts = [self.tokenize_query(c) if isinstance(c, str) else c for c in contexts]
        return self.kneser_ney(document_ends).probs_batch(self, [self._last(c, n) for c in contexts])

    def estimate_deltas(self, n: int, document_ends: str = "eos") -> Dict[int, float]:
        """Estimates the Kneser-Ney discounts of orders 1..n from the n-grams seen once
        and twice (visits every distinct prefix of up to n - 1 tokens: costly for large
        n); returns the discounts by order (orders never estimated use 0.5)."""
        model = self.kneser_ney(document_ends)
        model.estimate_deltas(n)
        return model.deltas()

    def count_next(self, contexts, width: Optional[int] = None, document_ends: str = "eos"):
        """Exact counts of every token after each context, dense: uint64
        ``[len(contexts), width]`` (``width`` defaults to ``vocab_size``)."""
        return _anygram.count_next_dense(self, contexts, width, document_ends)

    def sample_batch(self, contexts, k: int, method: str = "kneser_ney", n: Optional[int] = None,
                     num_samples: int = 1, seed: int = 0, document_ends: str = "eos"):
        """``num_samples`` continuations of ``k`` tokens after each context, drawn
        autoregressively on all cores: uint32 ``[len(contexts), num_samples, k]``.

        ``method``: ``"kneser_ney"`` (the smoothed order-``n`` distribution),
        ``"ngram"`` (the unsmoothed order-``n`` counts; an error when a context is never
        followed by a token) or ``"infgram"`` (the exact ∞-gram distribution after the
        whole sequence so far; ``n`` must be None). The same ``seed`` gives the same
        samples on any number of threads."""
        import numpy as np

        contexts = [self.tokenize_query(c) if isinstance(c, str) else c for c in contexts]
        if method == "infgram":
            if n is not None:
                raise InvalidQueryError("method='infgram' uses the whole context: leave n out")
            rows = _anygram.sample_infgram(self, contexts, k, num_samples, seed)
        elif method in ("kneser_ney", "ngram"):
            if n is None:
                raise InvalidQueryError(f"method={method!r} needs the order n")
            if method == "ngram":
                rows = _anygram.sample_unsmoothed(self, contexts, n, k, num_samples, seed, document_ends)
            else:
                rows = self.kneser_ney(document_ends).sample(self, contexts, n, k, num_samples, seed)
        else:
            raise InvalidQueryError(f"method must be 'kneser_ney', 'ngram' or 'infgram', not {method!r}")
        return np.asarray(rows).reshape(len(contexts), num_samples, rows.shape[1])

    def sample(self, context, k: int, method: str = "kneser_ney", n: Optional[int] = None,
               num_samples: int = 1, seed: int = 0, document_ends: str = "eos"):
        """:meth:`sample_batch` of one context: uint32 ``[num_samples, k]``."""
        return self.sample_batch([context], k, method, n, num_samples, seed, document_ends)[0]

    def _add_text(self, doc: Dict[str, Any]) -> Dict[str, Any]:
        if self.tokenizer is not None:
            doc["text"] = self.tokenizer.decode(doc["token_ids"])
        return doc

    def tokenize(self, text: str) -> List[int]:
        """The token ids of ``text`` under the index's tokenizer (no BOS/EOS), as the build
        encodes a document."""
        if self.tokenizer is None:
            raise InvalidArgumentError(f"index {self.path} has no tokenizer: pass token ids")
        return self.tokenizer.encode(text)

    def tokenize_query(self, text: str, verbatim: Optional[bool] = None) -> List[int]:
        """The token ids of a text query, as every string query of the engine gets them: as
        infini-gram's service makes them unless ``verbatim`` (default: as the engine was
        opened), see :meth:`Tokenizer.encode_query`."""
        if self.tokenizer is None:
            raise InvalidArgumentError(f"index {self.path} has no tokenizer: pass token ids")
        return self.tokenizer.encode_query(text, self.verbatim if verbatim is None else verbatim)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids under the index's tokenizer."""
        if self.tokenizer is None:
            raise InvalidArgumentError(f"index {self.path} has no tokenizer")
        return self.tokenizer.decode(ids)

    def info(self) -> Dict[str, Any]:
        """What is in the index: sizes, token width, vocabulary, tokenizer, shards."""
        return {
            "path": os.path.abspath(self.path),
            "token_width": self.token_width,
            "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id,
            "num_shards": self.num_shards,
            "num_tokens": self.num_tokens,
            "num_documents": self.num_documents,
            "tokenizer": None if self.manifest is None else self.manifest.get("tokenizer"),
            "has_manifest": self.manifest is not None,
            "shards": self.shard_info(),
            "build": None if self.manifest is None else self.manifest.get("build"),
        }

    def __repr__(self) -> str:
        return (
            f"Engine({self.path!r}, {self.num_tokens} tokens, {self.num_documents} documents, "
            f"{self.num_shards} shard(s), u{8 * self.token_width})"
        )
