"""Where anygram may write: the one check of output paths that every command and
function that writes runs before writing a byte.

An output must not be (through symbolic links or hard links included) one of the
inputs, another output, a file of an index or a path inside an index directory, nor
a directory that holds an input or an index; and ``build --overwrite`` replaces only
what is recognizably an index. Each path is given with the name the caller knows it
by (``"--out"`` on the command line, ``"out"`` in Python), so that the error speaks
the caller's words and names both paths.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

from . import _anygram
from .errors import InvalidArgumentError

# What an index directory holds: infini-gram's shard files and what an anygram build adds.
_SHARD_FILE = re.compile(r"(tokenized|table|offset|metadata|metaoff|accel)\.\d+")
_ANYGRAM_FILES = frozenset({_anygram.MANIFEST_FILE, *_anygram.ANYGRAM_ONLY_FILES})

Paths = Mapping[str, Optional[str]]


def is_index_file(name: str) -> bool:
    """Whether a file name is one that an index directory holds."""
    return name in _ANYGRAM_FILES or _SHARD_FILE.fullmatch(name) is not None


def check_replaceable_index(path: str, name: str = "output", overwrite_name: str = "overwrite=True") -> None:
    """Raises unless the existing ``path`` may be replaced by a new index: a real
    directory (not a link) holding only index files (an empty one too)."""
    refuse = f"{name} {path} exists and is not an index directory"
    if os.path.islink(path):
        raise InvalidArgumentError(f"{name} {path} is a symbolic link; {overwrite_name} replaces only an index "
                                   "directory: remove the link or choose another path")
    if not os.path.isdir(path):
        raise InvalidArgumentError(f"{refuse} (it is a file); {overwrite_name} replaces only an index directory")
    others = sorted(n for n in os.listdir(path) if not is_index_file(n))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise InvalidArgumentError(
            f"{refuse}: it holds {len(others)} other file(s) ({shown}); {overwrite_name} replaces only a "
            "directory of index files (anygram.json, tokenized.N, table.N, ...): choose another path")


def _resolved(path: str) -> str:
    """The path with every symbolic link resolved (of its directory, when it does not exist)."""
    return os.path.realpath(os.path.abspath(path))


def _inode(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _index_inodes(directory: str) -> Dict[Tuple[int, int], str]:
    """The files of an index directory by inode (a hard link elsewhere is the same file)."""
    out: Dict[Tuple[int, int], str] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        inode = _inode(os.path.join(directory, name))
        if inode is not None:
            out[inode] = os.path.join(directory, name)
    return out


def _present(paths: Paths) -> List[Tuple[str, str]]:
    return [(label, os.fspath(p)) for label, p in paths.items() if p is not None]


def check_outputs(outputs: Paths, inputs: Paths = {}, index_dirs: Paths = {},  # noqa: B006 (read only)
                  output_dirs: Paths = {}) -> None:  # noqa: B006
    """Raises :class:`InvalidArgumentError`, naming both paths, when an output file of
    ``outputs`` (label → path; None: not written) or an output directory of
    ``output_dirs`` (a build's) is the same file as an input, another output or a file
    of an index of ``index_dirs``, lies inside an index directory, or is a directory
    that holds an input or an index; and when an output file is a directory."""
    outs, ins, indexes = _present(outputs) + _present(output_dirs), _present(inputs), _present(index_dirs)
    resolved = {label: _resolved(p) for label, p in outs + ins + indexes}
    inodes = {label: _inode(p) for label, p in outs + ins}
    index_files = {label: _index_inodes(resolved[label]) for label, _ in indexes}

    def same(a: str, b: str) -> bool:
        return resolved[a] == resolved[b] or (inodes[a] is not None and inodes[a] == inodes[b])

    for i, (label, path) in enumerate(outs):
        where = f"{label} {path}"
        if label in outputs and os.path.isdir(path):
            raise InvalidArgumentError(f"{where} is a directory; give a file path")
        for other, other_path in outs[:i]:
            if same(label, other):
                raise InvalidArgumentError(f"{where} is the same file as {other} {other_path}: give each output "
                                           "its own path")
        for other, other_path in ins:
            if same(label, other):
                raise InvalidArgumentError(f"{where} is the same file as {other} {other_path}: writing it would "
                                           "destroy the input; give another output path")
            if _inside(resolved[other], resolved[label]):
                raise InvalidArgumentError(f"{where} contains {other} {other_path}: replacing it would destroy "
                                           "the input; give another output path")
        for other, other_path in indexes:
            directory = resolved[other]
            if _inside(resolved[label], directory) or (inodes[label] is not None
                                                        and inodes[label] in index_files[other]):
                raise InvalidArgumentError(f"{where} is inside index {other} {other_path}: writing there would "
                                           "corrupt the index; give a path outside it")
            if _inside(directory, resolved[label]):
                raise InvalidArgumentError(f"{where} contains index {other} {other_path}: give another output path")


def progress_file(output: str) -> str:
    """The checkpoint a resumable scan keeps beside its output (``OUTPUT.progress.json``)."""
    return output + ".progress.json"

