"""``ClusterEngine``: an index whose shards are held by Ray actors, answering with
:class:`anygram.Engine`'s methods and exactly its answers.

Each actor (:class:`ShardGroup`) opens a group of shards, each shard as its own engine
(a directory of links to that shard's files on the actor's node), so that the driver
can merge shard by shard exactly as the core merges its shards (``engine.rs``):

- counts and ``find``'s ranges add up, shard by shard;
- the ∞-gram's suffix is the longest one occurring in any shard; its counts are the sums
  over the shards where it is that long (elsewhere it does not occur);
- ``ntd`` samples every shard with one unit, chosen from the total count as the core
  does; a shard engine is asked with the ``max_support`` that makes it choose that unit
  (or, for a shard whose range is at most half of it, a unit at least its range, which
  samples alike);
- CNF: each shard with the core's per-shard budget, ``ceil(max_clause_freq / shards)``;
- ``search_docs``: the draw is the core's for the seed (:mod:`.sampling`) over the total,
  then each chosen occurrence is read from its shard;
- ``score``: each shard scores the whole text; per position the ∞-gram's merge above; the
  distribution is sparse when every shard with that longest suffix has one next token and
  it is the same one (their modes, asked for then); its mode (``top``) is a shard's own
  where one shard has that suffix, else the ``ntd`` merge's for that context;
- ``creativity``: per start, the furthest end over the shards; ``count_next``: the sum.

A batch is one request per group and round, whatever its size (:mod:`.transport`). Queries
given as text are tokenized on the driver with the index's tokenizer."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import IndexNotFoundError, InvalidArgumentError, InvalidQueryError
from ..manifest import read_manifest, stored_tokenizer
from ..tokenizer import Tokenizer
from .cluster import connect, get
from .sampling import sample_distinct
from ..errors import ShardGroupError
from .transport import Channel, Lost, QueryServer, reply_values, round_trip
from .views import shards_view

# What a shard group answers: Engine's query and document methods (nothing else by name).
QUERY_METHODS = frozenset({
    "count", "count_batch", "find", "prob", "ntd", "find_cnf", "get_doc_by_ix", "get_doc_by_ptr", "get_doc_by_rank",
    "score_batch", "creativity", "count_next",
})


class ShardGroup:
    """A group of an index's shards (the Ray actor's class): runs
    :class:`anygram.Engine` query methods on its shards, many calls in one.

    Queries reach it through its :class:`~.transport.QueryServer`, listening on its node's IP
    (as Ray reports it: never every interface) at the port :meth:`address` tells; Ray only
    starts it, restarts it, and asks it for that address."""

    def __init__(self, index: str, shards: List[int]):
        from ray.util import get_node_ip_address

        self.views = tempfile.mkdtemp(prefix="anygram-shards-")
        self.engines = [shards_view(index, [s], os.path.join(self.views, f"shard.{s}")) for s in shards]
        self.server = QueryServer(self.serve, get_node_ip_address())

    def address(self) -> Tuple[str, int]:
        """Where this group answers query frames."""
        return self.server.address

    def _method(self, i: int, name: Any):
        if not isinstance(name, str) or name not in QUERY_METHODS:
            raise InvalidArgumentError(f"a shard group answers {sorted(QUERY_METHODS)}, not {name!r}")
        return getattr(self.engines[i], name)

    def call(self, method: str, args: Sequence[Tuple]) -> List[List[Any]]:
        """``[[engine.method(*a) for a in args] for each shard]``."""
        return [[self._method(i, method)(*a) for a in args] for i in range(len(self.engines))]

    def call_mixed(self, calls_by_shard: Dict[int, Sequence[Tuple[str, Tuple]]]) -> Dict[int, List[Any]]:
        """``(method, args)`` calls for each shard (positions in the group)."""
        return {i: [self._method(i, m)(*a) for m, a in calls] for i, calls in calls_by_shard.items()}

    def serve(self, request: Any) -> Any:
        """One round's work for this group, the one thing a cluster engine asks: None
        (nothing this round), ``("all", method, args)`` (:meth:`call`) or ``("each",
        calls_by_shard)`` (:meth:`call_mixed`). Its shape is checked first: it comes from
        the network."""
        if request is None:
            return None
        if _is_call_list(request, 3) and request[0] == "all" and isinstance(request[1], str) \
                and _is_call_list(request[2]) and all(_is_call_list(a) for a in request[2]):
            return self.call(request[1], request[2])
        if _is_call_list(request, 2) and request[0] == "each" and isinstance(request[1], dict) and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(self.engines)
                and _is_call_list(calls) and all(_is_call_list(c, 2) and _is_call_list(c[1]) for c in calls)
                for i, calls in request[1].items()):
            return self.call_mixed(request[1])
        raise InvalidArgumentError(f"a malformed shard-group request: {request!r:.200}")

    def __del__(self):
        server = getattr(self, "server", None)
        if server is not None:
            server.close()
        shutil.rmtree(getattr(self, "views", ""), ignore_errors=True)


def _is_call_list(value: Any, length: Optional[int] = None) -> bool:
    return isinstance(value, (list, tuple)) and (length is None or len(value) == length)


def _powered_unit(total: int, max_support: int) -> int:
    """The core's sampling unit for a range of ``total`` (``engine.rs``, ``ntd_from``)."""
    unit = 1
    while total > min(unit * max_support, 2**64 - 1):
        unit <<= 1
    return unit


ACTOR_RESTARTS = 3
# A round's default time limit: a group that has not answered by then is an error, not a
# hang (a killed actor's connection fails at once; this is for a stalled or vanished one).
DEFAULT_TIMEOUT_S = 120.0


def shard_groups(num_shards: int, groups: int) -> List[List[int]]:
    """``groups`` contiguous groups of shards, as even as they come (at most one a shard)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InvalidArgumentError(f"groups must be a positive integer, got {groups!r}")
    groups = min(groups, num_shards)
    bounds = [round(g * num_shards / groups) for g in range(groups + 1)]
    return [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]


class ClusterEngine:
    """The query methods of :class:`anygram.Engine` over an index whose shards are spread
    over Ray actors (``groups`` of them; default one group per node of the cluster, at most
    one per shard). Every node must see the index at ``path`` (a shared filesystem, or each
    group's shard files copied there). ``ray``: True or a cluster address (see
    :func:`anygram.distributed.connect`).

    A query is one round of requests, one per group, sent together straight to the groups'
    sockets (:mod:`.transport`: Ray only starts the actors, restarts them and tells where
    they listen), of a few ids and numbers each. A Ray actor call costs 0.7-1.3 ms by
    itself, more than a query may add; a Ray compiled graph was faster but hung in the test
    suite and busy-polled a core while it waited. A group whose connection fails (its actor
    died) is found again through Ray once it is restarted and asked again (queries only
    read); a round that gets no answer within ``timeout`` seconds raises
    :class:`~.transport.ShardGroupError`."""

    def __init__(self, path: str, groups: Optional[int] = None, ray: Union[bool, str] = True,
                 tokenizer: Optional[str] = None, verbatim: bool = False, timeout: float = DEFAULT_TIMEOUT_S):
        if not isinstance(verbatim, bool):
            raise InvalidArgumentError(f"verbatim must be True or False, got {verbatim!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout < float("inf"):
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._channels: List[Channel] = []
        self.verbatim = verbatim
        ray_mod = connect(ray)
        path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(path):
            raise IndexNotFoundError(f"{path}: no such index directory")
        manifest = read_manifest(path)
        if manifest is None:
            raise InvalidArgumentError(f"{path}: a cluster engine needs an index built by anygram (with a manifest)")
        self.path = path
        self.manifest = manifest
        stored = stored_tokenizer(path, manifest)
        self.tokenizer: Optional[Tokenizer] = (Tokenizer(tokenizer or stored[0]) if stored is not None
                                               else Tokenizer(None) if manifest["token_width"] == 1 else None)
        self.token_width = manifest["token_width"]
        self.vocab_size = manifest["vocab_size"]
        self.eos_token_id = manifest["eos_token_id"]
        shards = manifest["shards"]
        self.num_shards = len(shards)
        self._shard_docs = [int(s["num_documents"]) for s in shards]
        self._doc_starts = np.cumsum([0] + self._shard_docs).tolist()
        self.num_documents = self._doc_starts[-1]
        self.num_tokens = sum(int(s["num_tokens"]) for s in shards)
        self._ray = ray_mod
        if groups is None:
            groups = len([n for n in ray_mod.nodes() if n.get("Alive")]) or 1
        self._groups = shard_groups(self.num_shards, groups)
        # Queries only read: an actor lost with its node is restarted (it opens its shards
        # again) and the calls in flight are retried.
        actor = ray_mod.remote(num_cpus=0, scheduling_strategy="SPREAD", max_restarts=ACTOR_RESTARTS,
                               max_task_retries=ACTOR_RESTARTS)(ShardGroup)
        self._actors = [actor.remote(path, g) for g in self._groups]
        self._where = {s: (a, i) for a, g in enumerate(self._groups) for i, s in enumerate(g)}
        addresses = get([a.address.remote() for a in self._actors])
        self._channels = [Channel(self._group_name(a), address) for a, address in enumerate(addresses)]

    def _group_name(self, a: int) -> str:
        group = self._groups[a]
        shards = f"shard {group[0]}" if len(group) == 1 else f"shards {group[0]}-{group[-1]}"
        return f"shard group {a} ({shards})"

    # -- fan-out ---------------------------------------------------------------------------

    def _round(self, requests: List[Optional[Tuple]]) -> List[Any]:
        """One round: ``requests[i]`` for group ``i`` (None: nothing); their replies."""
        if not self._channels:
            raise InvalidArgumentError(f"{self!r} is closed")
        wanted = [i for i, r in enumerate(requests) if r is not None]
        outcomes = round_trip([(self._channels[i], requests[i]) for i in wanted], self.timeout)
        lost = [k for k, outcome in enumerate(outcomes) if isinstance(outcome, Lost)]
        if lost:
            for k in lost:
                self._find_again(wanted[k], outcomes[k].reason)
            again = round_trip([(self._channels[wanted[k]], requests[wanted[k]]) for k in lost], self.timeout)
            for k, outcome in zip(lost, again):
                if isinstance(outcome, Lost):
                    channel = self._channels[wanted[k]]
                    raise ShardGroupError(f"{channel.name} at {channel.address[0]}:{channel.address[1]}: the "
                                          f"connection failed again after Ray restarted it: {outcome.reason}")
                outcomes[k] = outcome
        replies = reply_values(outcomes)
        out: List[Any] = [None] * len(requests)
        for i, reply in zip(wanted, replies):
            out[i] = reply
        return out

    def _find_again(self, a: int, reason: str) -> None:
        """Group ``a``'s connection failed (``reason``): its actor died. Ray restarts it;
        its (new) address, once it answers, replaces the old connections."""
        channel = self._channels[a]
        try:
            address = self._ray.get(self._actors[a].address.remote(), timeout=self.timeout)
        except Exception as e:  # the actor out of restarts, or not back within the timeout
            raise ShardGroupError(f"{channel.name} at {channel.address[0]}:{channel.address[1]}: its "
                                  f"connection failed ({reason}) and Ray did not bring its actor back: "
                                  f"{type(e).__name__}: {e}") from None
        channel.moved(address)

    def _all(self, method: str, args: Sequence[Tuple]) -> List[List[Any]]:
        """``method`` on every shard for every argument tuple: results by shard, then tuple."""
        replies = self._round([("all", method, list(args))] * len(self._actors))
        return [per_shard for reply in replies for per_shard in reply]

    def _each(self, method: str, args_by_shard: Dict[int, Sequence[Tuple]]) -> Dict[int, List[Any]]:
        """``method`` with other arguments for each global shard."""
        return self._each_mixed({s: [(method, a) for a in args] for s, args in args_by_shard.items()})

    def _each_mixed(self, calls_by_shard: Dict[int, List[Tuple[str, Tuple]]]) -> Dict[int, List[Any]]:
        """``(method, args)`` calls for each global shard: one call per group."""
        by_actor: Dict[int, Dict[int, List[Tuple[str, Tuple]]]] = {}
        for s, calls in calls_by_shard.items():
            a, i = self._where[s]
            by_actor.setdefault(a, {})[i] = calls
        replies = self._round([("each", by_actor[a]) if a in by_actor else None for a in range(len(self._actors))])
        return {self._groups[a][i]: results for a, reply in enumerate(replies) if reply is not None
                for i, results in reply.items()}

    def close(self) -> None:
        """Closes the connections and ends the actors."""
        channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []

    def __del__(self):
        for channel in getattr(self, "_channels", []):
            channel.close()

    def __enter__(self) -> "ClusterEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _one_machine_only(name: str):
        def method(self, *args, **kwargs):
            raise InvalidArgumentError(f"{name} is not answered by a cluster engine: open the index with "
                                       "anygram.Engine.open on one machine")
        method.__name__ = name
        method.__doc__ = f"Not on a cluster: {name} needs the whole index in one process."
        return method

    # Their merge is not a sum or a maximum over shards (Kneser-Ney's continuation counts,
    # attribute's kept spans, ntd_dense's sampled rows), or they read local files (verify,
    # count_reads).
    attribute = _one_machine_only("attribute")
    kneser_ney = _one_machine_only("kneser_ney")
    smoothed_probs = _one_machine_only("smoothed_probs")
    smoothed_probs_batch = _one_machine_only("smoothed_probs_batch")
    estimate_deltas = _one_machine_only("estimate_deltas")
    sample = _one_machine_only("sample")
    sample_batch = _one_machine_only("sample_batch")
    ntd_dense = _one_machine_only("ntd_dense")
    count_reads = _one_machine_only("count_reads")
    verify = _one_machine_only("verify")
    del _one_machine_only

    # -- arguments -------------------------------------------------------------------------

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            raise InvalidArgumentError(f"index {self.path} has no tokenizer: nothing to decode with")
        return self.tokenizer.decode(ids)

    def tokenize(self, text: str) -> List[int]:
        if self.tokenizer is None:
            raise InvalidArgumentError(f"index {self.path} has no tokenizer: pass token ids")
        return self.tokenizer.encode(text)

    def tokenize_query(self, text: str, verbatim: Optional[bool] = None) -> List[int]:
        """A text query's ids: the local engine's rule, called rather than repeated."""
        from ..engine import Engine

        return Engine.tokenize_query(self, text, verbatim)  # type: ignore[arg-type]

    def _ids(self, query: Any) -> Any:
        return self.tokenize_query(query) if isinstance(query, str) else query

    def _token(self, token: Any, what: str = "token") -> Any:
        if isinstance(token, str):
            ids = self.tokenize_query(token)
            if len(ids) != 1:
                raise InvalidQueryError(f"{what} {token!r} is {len(ids)} tokens {ids}; it must be exactly one")
            return ids[0]
        return token

    # -- counts ----------------------------------------------------------------------------

    def find(self, query) -> Dict[str, Any]:
        found = [r[0] for r in self._all("find", [(self._ids(query),)])]
        return {"cnt": sum(f["cnt"] for f in found), "segment_by_shard": [f["segment_by_shard"][0] for f in found]}

    def count(self, query) -> int:
        return sum(r[0] for r in self._all("count", [(self._ids(query),)]))

    def count_batch(self, queries) -> np.ndarray:
        per_shard = self._all("count_batch", [([self._ids(q) for q in queries],)])
        total = np.zeros(len(queries), dtype=np.uint64)
        for r in per_shard:
            total += r[0]
        return total

    # -- probabilities ---------------------------------------------------------------------

    def prob(self, context, token, n: Optional[int] = None) -> Dict[str, Any]:
        return self._probs([context], [token], n)[0]

    def infgram_prob(self, context, token) -> Dict[str, Any]:
        return self._probs([context], [token], None)[0]

    def prob_batch(self, contexts, tokens, n: Optional[int] = None) -> Dict[str, np.ndarray]:
        return self._prob_arrays(self._probs(contexts, tokens, n, batch=True))

    def infgram_prob_batch(self, contexts, tokens) -> Dict[str, np.ndarray]:
        return self._prob_arrays(self._probs(contexts, tokens, None, batch=True))

    @staticmethod
    def _prob_arrays(results: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
        return {"prob": np.array([r["prob"] for r in results], dtype=np.float64),
                "prompt_cnt": np.array([r["prompt_cnt"] for r in results], dtype=np.uint64),
                "cont_cnt": np.array([r["cont_cnt"] for r in results], dtype=np.uint64),
                "suffix_len": np.array([r["suffix_len"] for r in results], dtype=np.uint64)}

    def _probs(self, contexts, tokens, n, batch: bool = False) -> List[Dict[str, Any]]:
        contexts = [self._ids(c) for c in contexts]
        tokens = [self._token(t) for t in tokens]
        if len(contexts) != len(tokens):
            raise InvalidQueryError(f"{len(contexts)} contexts but {len(tokens)} tokens")
        per_shard = self._all("prob", [(c, t, n) for c, t in zip(contexts, tokens)])
        out = []
        for q in range(len(contexts)):
            answers = [shard[q] for shard in per_shard]
            # n=None is the ∞-gram: the longest suffix over all shards; shorter elsewhere means absent there.
            longest = max(a["suffix_len"] for a in answers)
            at = [a for a in answers if a["suffix_len"] == longest]
            prompt = sum(a["prompt_cnt"] for a in at)
            cont = sum(a["cont_cnt"] for a in at)
            out.append({"prompt_cnt": prompt, "cont_cnt": cont, "prob": cont / prompt if prompt else -1.0,
                        "suffix_len": longest})
        return out

    # -- next-token distributions ----------------------------------------------------------

    def ntd(self, context, n: Optional[int] = None, max_support: int = 1000) -> Dict[str, Any]:
        return self._ntds([context], n, max_support)[0]

    def infgram_ntd(self, context, max_support: int = 1000) -> Dict[str, Any]:
        return self._ntds([context], None, max_support)[0]

    def ntd_batch(self, contexts, n: Optional[int] = None, max_support: int = 1000) -> List[Dict[str, Any]]:
        return self._ntds(contexts, n, max_support)

    def infgram_ntd_batch(self, contexts, max_support: int = 1000) -> List[Dict[str, Any]]:
        return self._ntds(contexts, None, max_support)

    def _ntds(self, contexts, n, max_support) -> List[Dict[str, Any]]:
        contexts = [self._ids(c) for c in contexts]
        # Round 1: each shard's own answer, which gives its exact count (the sum of its
        # counts, sampled or not) and, for the ∞-gram, its longest suffix.
        first = self._all("ntd", [(c, n, max_support) for c in contexts])
        plans = []
        again: Dict[int, List[Tuple]] = {}
        for q, context in enumerate(contexts):
            answers = [shard[q] for shard in first]
            longest = max(a["suffix_len"] for a in answers)
            at = [s for s, a in enumerate(answers) if a["suffix_len"] == longest and a["prompt_cnt"]]
            total = sum(answers[s]["prompt_cnt"] for s in at)
            unit = _powered_unit(total, max_support)
            plans.append((longest, at, total, unit))
            if unit > 1:
                # Round 2: every shard with the one unit (see the module's docstring).
                tail = list(context)[len(context) - longest:] if longest else []
                for s in at:
                    support = -(-answers[s]["prompt_cnt"] // unit)
                    again.setdefault(s, []).append((tail, None if n is None else longest + 1, support))
        second = self._each("ntd", again) if again else {}
        taken = {s: 0 for s in second}
        out = []
        for q, (longest, at, total, unit) in enumerate(plans):
            merged: Dict[int, int] = {}
            for s in at:
                if unit > 1:
                    answer = second[s][taken[s]]
                    taken[s] += 1
                else:
                    answer = first[s][q]
                for token, entry in answer["result_by_token_id"].items():
                    merged[token] = merged.get(token, 0) + entry["cont_cnt"]
            out.append({"prompt_cnt": total,
                        "result_by_token_id": {t: {"cont_cnt": c, "prob": c / total} for t, c in sorted(merged.items())},
                        "approx": unit > 1, "suffix_len": longest})
        return out

    def _merged_ntds(self, requests: List[Tuple[List[int], Optional[int], List[int], List[int], int]]
                     ) -> List[Dict[int, int]]:
        """Next-token counts of contexts over the shards that hold them: ``(context, n,
        shards, their counts, max_support)`` each, every shard sampled with the one unit of
        the total (round 2 of :meth:`_ntds`). Returns each context's merged counts and unit."""
        calls: Dict[int, List[Tuple]] = {}
        units = []
        for context, n, at, counts, max_support in requests:
            unit = _powered_unit(sum(counts), max_support)
            units.append(unit)
            for s, count in zip(at, counts):
                calls.setdefault(s, []).append((context, n, -(-count // unit)))
        answers = self._each("ntd", calls) if calls else {}
        taken = {s: 0 for s in answers}
        out = []
        for (_, _, at, _, _), unit in zip(requests, units):
            merged: Dict[int, int] = {}
            for s in at:
                answer = answers[s][taken[s]]
                taken[s] += 1
                for token, entry in answer["result_by_token_id"].items():
                    merged[token] = merged.get(token, 0) + entry["cont_cnt"]
            out.append((merged, unit))
        return out

    def count_next(self, contexts, width: Optional[int] = None, document_ends: str = "eos") -> np.ndarray:
        """As :meth:`anygram.Engine.count_next`: exact counts, the shards' sum."""
        if isinstance(contexts, (str, bytes)) or not hasattr(contexts, "__len__"):
            raise InvalidQueryError("contexts must be a list of contexts (token ids or strings)")
        contexts = [self._ids(c) for c in contexts]
        per_shard = [r[0] for r in self._all("count_next", [(contexts, width, document_ends)])]
        total = per_shard[0].copy()
        for counts in per_shard[1:]:
            total += counts
        return total

    # -- a whole text ----------------------------------------------------------------------

    def score(self, tokens, sparse: bool = True, top: bool = False, max_support: int = 1000,
              doc_start: bool = False) -> Dict[str, Any]:
        """As :meth:`anygram.Engine.score` (the same arrays)."""
        return self.score_batch([tokens], sparse, top, max_support, doc_start)[0]

    def score_batch(self, texts, sparse: bool = True, top: bool = False, max_support: int = 1000,
                    doc_start: bool = False) -> List[Dict[str, Any]]:
        """As :meth:`anygram.Engine.score_batch`: one call per group for all the texts (and
        one more round for the modes of contexts that several shards hold)."""
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise InvalidQueryError("texts must be a list of texts (token ids or strings)")
        texts = [self.tokenize(t) if isinstance(t, str) else t for t in texts]
        if top and doc_start:
            # A context that reaches the document start holds the separator, which no ntd query can.
            raise InvalidArgumentError("score with top=True and doc_start=True is not answered by a cluster engine: "
                                       "open the index with anygram.Engine.open on one machine")
        # The shards' modes tell which one token a sparse distribution has.
        per_shard = [r[0] for r in self._all("score_batch", [(texts, sparse, top or sparse, max_support, doc_start)])]
        out = []
        wanted = []  # (text, position, context, shards, counts) whose mode needs the shards' merged ntd
        for t in range(len(texts)):
            answers = [shard[t] for shard in per_shard]
            suffix = np.max([a["suffix_len"] for a in answers], axis=0)
            result: Dict[str, Any] = {"prob": np.empty(len(suffix), dtype=np.float64), "suffix_len": suffix,
                                      "prompt_cnt": np.zeros(len(suffix), dtype=np.uint64),
                                      "cont_cnt": np.zeros(len(suffix), dtype=np.uint64)}
            holds = [a["suffix_len"] == suffix for a in answers]  # shards whose suffix is the longest
            for a, h in zip(answers, holds):
                result["prompt_cnt"] += np.where(h, a["prompt_cnt"], 0).astype(np.uint64)
                result["cont_cnt"] += np.where(h, a["cont_cnt"], 0).astype(np.uint64)
            prompt, cont = result["prompt_cnt"].tolist(), result["cont_cnt"].tolist()
            result["prob"][:] = [c / p if p else -1.0 for p, c in zip(prompt, cont)]
            holds = [h & (a["prompt_cnt"] > 0) for a, h in zip(answers, holds)]
            if sparse:
                modes = [np.where(h, a["top_token"], -1) for a, h in zip(answers, holds)]
                every_sparse = np.logical_and.reduce([~h | a["sparse"] for a, h in zip(answers, holds)])
                highest, lowest = np.max(modes, axis=0), np.min(np.where(np.array(holds), modes, 2**62), axis=0)
                result["sparse"] = every_sparse & np.any(holds, axis=0) & (highest == lowest)
            if top:
                result["top_token"] = np.full(len(suffix), -1, dtype=np.int64)
                result["top_prob"] = np.zeros(len(suffix), dtype=np.float64)
                result["top_approx"] = np.zeros(len(suffix), dtype=bool)
                shards_at = np.sum(holds, axis=0)
                for i in np.flatnonzero(shards_at == 1).tolist():
                    a = answers[next(s for s, h in enumerate(holds) if h[i])]
                    for key in ("top_token", "top_prob", "top_approx"):
                        result[key][i] = a[key][i]
                for i in np.flatnonzero(shards_at > 1).tolist():
                    at = [s for s, h in enumerate(holds) if h[i]]
                    n = int(suffix[i])
                    wanted.append((t, i, list(texts[t][i - n:i]) if n else [], at,
                                   [int(answers[s]["prompt_cnt"][i]) for s in at]))
            out.append(result)
        if wanted:
            merged = self._merged_ntds([(context, None, at, counts, max_support)
                                        for _, _, context, at, counts in wanted])
            for (t, i, _, _, counts), (dist, unit) in zip(wanted, merged):
                if dist:
                    # First maximum by id order: the smallest id wins ties (the core's rule).
                    token = max(sorted(dist), key=lambda k: (dist[k], -k))
                    out[t]["top_token"][i] = token
                    out[t]["top_prob"][i] = dist[token] / sum(counts)
                out[t]["top_approx"][i] = unit > 1
        return out

    def creativity(self, tokens) -> Dict[str, Any]:
        """As :meth:`anygram.Engine.creativity`: per start, the furthest end over the shards."""
        rs = [r[0]["rs"] for r in self._all("creativity", [(self._ids(tokens),)])]
        return {"rs": np.max(rs, axis=0).tolist() if rs and len(rs[0]) else []}

    # -- documents -------------------------------------------------------------------------

    def _documents(self, wanted: List[Tuple[str, int, int, int]]) -> List[Dict[str, Any]]:
        """Documents by ``(method, shard, position, max_disp_len)``, in order, with global
        ``doc_ix`` and ``shard`` (and text with a tokenizer): one actor call per group."""
        calls: Dict[int, List[Tuple]] = {}
        for method, s, position, max_disp_len in wanted:
            calls.setdefault(s, []).append((method, (0, position, max_disp_len)))
        fetched = self._each_mixed(calls) if calls else {}
        taken = {s: 0 for s in fetched}
        out = []
        for _, s, _, _ in wanted:
            out.append(self._globalize(dict(fetched[s][taken[s]]), s))
            taken[s] += 1
        return out

    def _globalize(self, doc: Dict[str, Any], s: int) -> Dict[str, Any]:
        doc["doc_ix"] += self._doc_starts[s]
        doc["shard"] = s
        if self.tokenizer is not None:
            doc["text"] = self.tokenizer.decode(doc["token_ids"])
        return doc

    def _check_shard(self, shard: Any) -> int:
        if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)) or not 0 <= shard < self.num_shards:
            raise InvalidQueryError(f"shard {shard!r} is out of range: the index has {self.num_shards} shard(s)")
        return int(shard)

    def get_doc_by_ptr(self, shard: int, ptr: int, max_disp_len: int = 1000) -> Dict[str, Any]:
        return self._documents([("get_doc_by_ptr", self._check_shard(shard), ptr, max_disp_len)])[0]

    def get_docs_by_ptrs(self, shard_ptrs, max_disp_len: int = 1000) -> List[Dict[str, Any]]:
        return self._documents([("get_doc_by_ptr", self._check_shard(s), p, max_disp_len) for s, p in shard_ptrs])

    def get_doc_by_rank(self, shard: int, rank: int, max_disp_len: int = 1000) -> Dict[str, Any]:
        return self._documents([("get_doc_by_rank", self._check_shard(shard), rank, max_disp_len)])[0]

    def get_docs_by_ixs(self, doc_ixs, max_disp_len: int = 1000) -> List[Dict[str, Any]]:
        by_shard: Dict[int, List[Tuple]] = {}
        order = []
        for ix in doc_ixs:
            if isinstance(ix, bool) or not isinstance(ix, (int, np.integer)) or not 0 <= ix < self.num_documents:
                raise InvalidQueryError(f"doc_ix {ix!r} is out of range: the index has {self.num_documents} documents")
            s = int(np.searchsorted(self._doc_starts, int(ix), side="right")) - 1
            by_shard.setdefault(s, []).append((int(ix) - self._doc_starts[s], max_disp_len))
            order.append(s)
        fetched = self._each("get_doc_by_ix", by_shard) if by_shard else {}
        taken = {s: 0 for s in fetched}
        out = []
        for s in order:
            out.append(self._globalize(dict(fetched[s][taken[s]]), s))
            taken[s] += 1
        return out

    def get_doc_by_ix(self, doc_ix: int, max_disp_len: int = 1000) -> Dict[str, Any]:
        return self.get_docs_by_ixs([doc_ix], max_disp_len)[0]

    @staticmethod
    def _check_draw(maxnum: Any, seed: Any) -> None:
        if isinstance(maxnum, bool) or not isinstance(maxnum, (int, np.integer)) or maxnum < 1:
            raise InvalidQueryError(f"maxnum must be a positive integer, got {maxnum!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= seed < 2**64):
            raise InvalidQueryError(f"seed must be None or an integer in [0, 2^64), got {seed!r}")

    def search_docs(self, query, maxnum: int = 1, max_disp_len: int = 1000, seed: Optional[int] = None):
        """As :meth:`anygram.Engine.search_docs`: the same documents for the same seed."""
        self._check_draw(maxnum, seed)
        found = self.find(query)
        ranges = found["segment_by_shard"]
        idxs = list(range(found["cnt"])) if found["cnt"] <= maxnum else sample_distinct(found["cnt"], int(maxnum), seed)
        wanted = []
        for idx in idxs:
            for s, (lo, hi) in enumerate(ranges):
                if idx < hi - lo:
                    wanted.append(("get_doc_by_rank", s, lo + idx, max_disp_len))
                    break
                idx -= hi - lo
        return {"cnt": found["cnt"], "approx": False, "idxs": idxs, "documents": self._documents(wanted)}

    # -- CNF -------------------------------------------------------------------------------

    def cnf(self, query) -> List[List[List[int]]]:
        from ..engine import Engine

        return Engine.cnf(self, query)  # only tokenizes: the same parsing as the local engine

    def find_cnf(self, query, max_clause_freq: int = 50000, max_diff_tokens: int = 100) -> Dict[str, Any]:
        cnf = self.cnf(query)
        if isinstance(max_clause_freq, (int, np.integer)) and not isinstance(max_clause_freq, bool) \
                and max_clause_freq > 0:
            budget = -(-int(max_clause_freq) // self.num_shards)  # the core's per-shard budget
        else:
            budget = max_clause_freq  # the shards' engines reject it as the local one does
        found = [r[0] for r in self._all("find_cnf", [(cnf, budget, max_diff_tokens)])]
        if all(not f["ptrs_by_shard"] for f in found) and self._some_clause_absent(cnf):
            return {"cnt": 0, "approx": False, "ptrs_by_shard": []}
        return {"cnt": sum(f["cnt"] for f in found), "approx": any(f["approx"] for f in found),
                "ptrs_by_shard": [f["ptrs_by_shard"][0] if f["ptrs_by_shard"] else [] for f in found]}

    def _some_clause_absent(self, cnf) -> bool:
        terms = [t for clause in cnf for t in clause]
        counts = self.count_batch(terms).tolist()
        at = 0
        for clause in cnf:
            if sum(counts[at:at + len(clause)]) == 0:
                return True
            at += len(clause)
        return False

    def count_cnf(self, query, max_clause_freq: int = 50000, max_diff_tokens: int = 100) -> Dict[str, Any]:
        found = self.find_cnf(query, max_clause_freq, max_diff_tokens)
        return {"count": found["cnt"], "approx": found["approx"]}

    def search_docs_cnf(self, query, maxnum: int = 1, max_disp_len: int = 1000, max_clause_freq: int = 50000,
                        max_diff_tokens: int = 100, seed: Optional[int] = None) -> Dict[str, Any]:
        self._check_draw(maxnum, seed)
        found = self.find_cnf(query, max_clause_freq, max_diff_tokens)
        ptrs = found["ptrs_by_shard"]
        total = sum(len(p) for p in ptrs)
        idxs = list(range(total)) if total <= maxnum else sample_distinct(total, int(maxnum), seed)
        wanted = []
        for idx in idxs:
            for s, p in enumerate(ptrs):
                if idx < len(p):
                    wanted.append(("get_doc_by_ptr", s, p[idx], max_disp_len))
                    break
                idx -= len(p)
        return {"cnt": found["cnt"], "approx": found["approx"], "idxs": idxs, "documents": self._documents(wanted)}

    def info(self) -> Dict[str, Any]:
        return {"path": self.path, "token_width": self.token_width, "vocab_size": self.vocab_size,
                "eos_token_id": self.eos_token_id, "num_shards": self.num_shards, "num_tokens": self.num_tokens,
                "num_documents": self.num_documents, "groups": [list(g) for g in self._groups]}

    def __repr__(self) -> str:
        return (f"ClusterEngine({self.path!r}, {self.num_tokens} tokens, {self.num_shards} shard(s) "
                f"in {len(self._groups)} group(s))")
