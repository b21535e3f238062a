"""The exceptions anygram raises. Each names what was wrong.

Every class derives from :class:`AnygramError`, and from the builtin whose meaning
it shares, so ``except ValueError`` and ``except FileNotFoundError`` work as expected.
"""


class AnygramError(Exception):
    """Base class of every anygram error."""


class InvalidQueryError(AnygramError, ValueError):
    """A query anygram cannot answer: a token id outside the vocabulary, a string for an
    index without a tokenizer, a non-positive ``max_support``, a malformed argument."""


class InvalidArgumentError(AnygramError, ValueError):
    """Bad parameters to open or build an index."""


class IndexExistsError(InvalidArgumentError, FileExistsError):
    """A build's output already holds an index and ``overwrite`` was not given."""


class ShardGroupError(AnygramError, ConnectionError):
    """A shard group of a cluster engine that could not be reached, or did not answer
    within the engine's timeout; the message names the group and its address. The
    query may be retried once the cluster has recovered (HTTP 503 from the service)."""


class IndexNotFoundError(AnygramError, FileNotFoundError):
    """The index directory or one of its files does not exist."""


class CorruptIndexError(AnygramError):
    """Index files that are truncated, inconsistent with each other or with the manifest,
    or of an unsupported format version. ``anygram verify`` says more; rebuild the index."""


class IndexIOError(AnygramError, OSError):
    """An operating-system error while reading or writing index files."""


class TokenizerMismatchError(AnygramError, ValueError):
    """A tokenizer that is not the one the index was built with."""


class BuildError(AnygramError):
    """An index build that failed (bad input under ``--strict``, a failed sort, ...).
    A failed build leaves no directory that opens as an index."""


class InternalError(AnygramError, RuntimeError):
    """A bug in anygram (a Rust panic caught at the boundary). The message says
    what failed; please report it with the call that caused it."""


class OutOfMemoryError(AnygramError, MemoryError):
    """An allocation anygram asked for (e.g. a dense ``ntd_dense`` array) failed; the
    message names its size."""
