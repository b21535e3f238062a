"""anygram: exact n-gram and ∞-gram statistics over suffix-array indexes of
tokenized corpora, compatible with infini-gram's index files.

>>> import anygram
>>> engine = anygram.Engine.open("my-index")            # doctest: +SKIP
>>> engine.count("natural language")                    # doctest: +SKIP
>>> engine.prob("natural language", engine.tokenize(" processing")[0])   # doctest: +SKIP
"""

from . import errors, plot
from ._anygram import __version__
from .builder import BuildReport, build_index
from .engine import Engine
from .mix import LambdaTable, mix, mix_token_logprobs
from .errors import (
    AnygramError,
    BuildError,
    CorruptIndexError,
    IndexExistsError,
    IndexNotFoundError,
    InternalError,
    InvalidArgumentError,
    InvalidQueryError,
    OutOfMemoryError,
    ShardGroupError,
    TokenizerMismatchError,
)
from .scan import ContaminationReport, DedupReport, contamination, dedup
from .tokenizer import Tokenizer

__all__ = [
    "Engine",
    "mix",
    "mix_token_logprobs",
    "LambdaTable",
    "build_index",
    "BuildReport",
    "Tokenizer",
    "contamination",
    "dedup",
    "ContaminationReport",
    "DedupReport",
    "errors",
    "plot",
    "AnygramError",
    "BuildError",
    "CorruptIndexError",
    "IndexExistsError",
    "IndexNotFoundError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidQueryError",
    "OutOfMemoryError",
    "ShardGroupError",
    "TokenizerMismatchError",
    "__version__",
]
