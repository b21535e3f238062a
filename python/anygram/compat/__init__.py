"""Drop-in replacements for other n-gram engines' Python APIs, built on :class:`anygram.Engine`.

>>> from anygram.compat import InfiniGramEngine      # instead of: from infini_gram.engine import ...
>>> from anygram.compat.tokengrams import MemmapIndex  # instead of: from tokengrams import ...
"""

from .infinigram import InfiniGramArgumentError, InfiniGramEngine

__all__ = ["InfiniGramEngine", "InfiniGramArgumentError"]
