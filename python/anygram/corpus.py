"""Corpus readers: turn input files into documents, and account for every document
that cannot be read (it is counted and reported, never silently lost).

Inputs:
* JSONL (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``; also ``.json*``): one JSON object a line
  with a text field (``text`` by default); the other fields become the document's metadata.
* Parquet (``.parquet``): one document a row, the text in a string column (``text`` by
  default), the other columns as metadata; read in record batches (needs ``pyarrow``:
  ``pip install 'anygram[parquet]'``).
* Plain text (any other file): one document per file, or per line with ``text_mode="lines"``.
* Pre-tokenized ``.npy``: a 2-D array (one document a row), or a 1-D array with document
  boundaries in a sibling ``NAME.offsets.npy`` (each document's start index, then the
  array's length: N+1 entries); without one, the whole array is one document.
* Python documents (``read_records``): any iterable of strings or of dicts with a text
  field, e.g. a generator or a HuggingFace ``datasets`` dataset (streaming or not; it is
  duck-typed, ``datasets`` is not needed); the other fields become the metadata.
* Directories: every file inside, recursively, in sorted order; hidden files and
  directories are left out, and links that lead nowhere or loop are skipped and counted.

Everything streams: compressed files are decoded as they are read, JSONL and text lines
one at a time, Parquet one record batch at a time; only a whole-file text document is
held whole. Each document carries ``input_done``, the bytes of input (as stored, so
compressed bytes for compressed files) consumed up to it, for progress bars.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import BuildError, InvalidArgumentError


@dataclass
class Document:
    """One document: ``text`` (to tokenize) or ``tokens`` (pre-tokenized), and metadata."""

    path: str
    linenum: int
    text: Optional[str] = None
    tokens: Optional[np.ndarray] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
    input_done: int = 0


_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_at(text: str) -> Optional[int]:
    """The position of the first lone surrogate in ``text`` (JSON's ``"\\ud800"`` decodes to
    one; it is not a character, so no UTF-8 or tokenizer takes it), or None."""
    found = _SURROGATE.search(text)
    return found.start() if found else None


def check_text(text: str, where: str) -> str:
    """``text``, or an error naming ``where`` when it holds a lone surrogate."""
    at = surrogate_at(text)
    if at is not None:
        raise InvalidArgumentError(f"{where}: lone surrogate U+{ord(text[at]):04X} at character {at} "
                                   "(not valid Unicode text)")
    return text


@dataclass
class SkipLog:
    """Documents that could not be read, by reason, with the first few places."""

    counts: Counter = field(default_factory=Counter)
    examples: List[str] = field(default_factory=list)
    strict: bool = False

    def skip(self, reason: str, path: str, linenum: int, detail: str = "") -> None:
        place = f"{path}:{linenum + 1}" if linenum >= 0 else path  # -1: the file as a whole
        where = f"{place}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict:
            raise BuildError(f"unreadable document at {where}; without strict=True "
                             "such documents are skipped and counted")
        self.counts[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _link_problem(path: str) -> str:
    """Why ``path``, a directory entry that cannot be opened, cannot be (a link's fault)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop"
        if os.path.islink(path):
            return "dangling symlink"
        return f"unreadable entry ({e.strerror})"
    return "unreadable entry"


def _expand(inputs: List[str], skips: Optional[SkipLog] = None) -> List[str]:
    """The files of ``inputs``, directories walked in sorted order. Inside directories,
    hidden entries (``.git/``, ``.env``) are left out, symbolic links are followed, and
    a link that leads nowhere, loops or reaches a directory already read is skipped:
    counted in ``skips`` with a warning (an error when it is strict, or without one)."""
    paths: List[str] = []

    def bad(path: str, reason: str) -> None:
        if skips is None:
            raise BuildError(f"{path}: {reason}")
        skips.skip(reason, path, -1)
        warnings.warn(f"anygram: skipped {path}: {reason}", stacklevel=3)

    for item in inputs:
        if os.path.isdir(item):
            seen = {_dir_id(item)}
            for root, dirs, files in os.walk(item, followlinks=True):
                kept = []
                for name in sorted(dirs):
                    if name.startswith("."):
                        continue
                    full = os.path.join(root, name)
                    ident = _dir_id(full)
                    if ident in seen:
                        bad(full, "symlink loop" if _is_ancestor(full, root) else "directory already read")
                        continue
                    seen.add(ident)
                    kept.append(name)
                dirs[:] = kept
                for name in sorted(files):
                    if name.startswith(".") or name.endswith(".offsets.npy"):
                        continue
                    full = os.path.join(root, name)
                    if not os.path.isfile(full):
                        bad(full, _link_problem(full))
                        continue
                    paths.append(full)
        elif os.path.isfile(item):
            paths.append(item)
        elif os.path.lexists(item):
            raise BuildError(f"input {item}: {_link_problem(item)}")
        else:
            raise BuildError(f"input not found: {item}")
    if not paths:
        raise BuildError(f"no input files in {inputs}")
    return paths


def _dir_id(path: str) -> Tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _is_ancestor(link: str, root: str) -> bool:
    """Whether directory ``link`` leads back to ``root`` or a directory above it (a loop)."""
    target, here = os.path.realpath(link), os.path.realpath(root)
    return here == target or here.startswith(target.rstrip(os.sep) + os.sep)


def input_paths(inputs: Union[str, List[str]], skips: Optional[SkipLog] = None) -> List[str]:
    """The files ``inputs`` (files or directories) stand for, in reading order; entries
    of directories that cannot be read go to ``skips`` (see :func:`_expand`)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    return _expand([os.fspath(i) for i in inputs], skips)


class _Source:
    """An input file opened for streaming: ``stream`` yields decoded bytes, ``raw_position()``
    says how much of the stored file has been consumed."""

    def __init__(self, path: str):
        self.raw = open(path, "rb")
        name = path.lower()
        if name.endswith(".gz"):
            self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=self.raw, mode="rb")  # type: ignore[assignment]
        elif name.endswith(".zst"):
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(self.raw, closefd=False)
            self.stream = io.BufferedReader(reader, 1 << 20)  # type: ignore[arg-type]
        else:
            self.stream = self.raw  # type: ignore[assignment]

    def raw_position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


def _kind(path: str) -> str:
    name = path.lower()
    for suffix in (".gz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".jsonl") or name.endswith(".json") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def read_documents(
    inputs: Union[str, List[str]],
    skips: SkipLog,
    text_field: str = "text",
    text_mode: str = "document",
) -> Iterator[Document]:
    """Yields the documents of ``inputs`` in order; unreadable ones go to ``skips``."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    if text_mode not in ("document", "lines"):
        raise BuildError(f"text_mode must be 'document' or 'lines', not {text_mode!r}")
    done = 0
    for path in _expand(list(inputs), skips):
        kind = _kind(path)
        if kind == "jsonl":
            docs = _read_jsonl(path, skips, text_field)
        elif kind == "npy":
            docs = _read_npy(path, skips)
        elif kind == "parquet":
            docs = _read_parquet(path, skips, text_field)
        else:
            docs = _read_text(path, skips, text_mode)
        for doc in docs:
            doc.input_done += done
            yield doc
        done += os.path.getsize(path)


def _jsonl_values(source: _Source) -> Iterator[Tuple[int, Any, Optional[Tuple[str, str]]]]:
    """The one JSONL reader: ``(line index, value, None)`` for each non-blank line of
    ``source``, or ``(line index, None, (problem, detail))`` for a line that is not UTF-8
    or not JSON; what to do with those is the caller's (a build skips them, a scan stops)."""
    for linenum, raw in enumerate(source.stream):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield linenum, None, ("bad UTF-8", str(e))
            continue
        try:
            yield linenum, json.loads(line), None
        except json.JSONDecodeError as e:
            yield linenum, None, ("bad JSON", str(e))


def _is_unreadable_file(e: Exception) -> bool:
    """A truncated or corrupt (compressed) file; zstandard raises its own ZstdError."""
    return isinstance(e, (OSError, EOFError)) or type(e).__name__ == "ZstdError"


def read_jsonl(path: str) -> Iterator[Any]:
    """The values of a JSONL file (plain, ``.gz`` or ``.zst``), one JSON value a line
    (blank lines are passed over); a line that is not UTF-8 JSON, or a corrupt file, is
    an :class:`InvalidArgumentError` naming ``path:line``. Eval sets of scans and eval-lm."""
    try:
        with _Source(path) as source:
            for linenum, value, problem in _jsonl_values(source):
                if problem is not None:
                    what = "not valid JSON" if problem[0] == "bad JSON" else "not valid UTF-8"
                    raise InvalidArgumentError(f"{path}:{linenum + 1}: {what} ({problem[1]})")
                yield value
    except Exception as e:
        if not _is_unreadable_file(e):
            raise
        raise InvalidArgumentError(f"{path}: unreadable file ({e})") from None


def _record_text(record: Any, text_field: str, strings: bool = False
                 ) -> Tuple[Optional[str], Dict[str, Any], Optional[Tuple[str, str]]]:
    """The one check of a document record (a JSONL line, a Python document): ``(text,
    metadata, None)``, or ``(None, {}, (reason, detail))`` when it is to be skipped.
    ``strings``: a bare string is a document too (Python iterables)."""
    if strings and isinstance(record, str):
        text, metadata = record, {}
    elif isinstance(record, Mapping) and text_field in record:
        metadata = dict(record)
        text = metadata.pop(text_field)
    elif isinstance(record, Mapping) or not strings:
        return None, {}, (f"no {text_field!r} field", "")
    else:
        return None, {}, ("not a string or a dict", type(record).__name__)
    if not isinstance(text, str):
        return None, {}, (f"{text_field!r} is not a string", "")
    at = surrogate_at(text)
    if at is not None:
        return None, {}, ("lone surrogate", f"U+{ord(text[at]):04X} at character {at}")
    return text, metadata, None


def _read_jsonl(path: str, skips: SkipLog, text_field: str) -> Iterator[Document]:
    try:
        with _Source(path) as source:
            for linenum, record, problem in _jsonl_values(source):
                if problem is not None:
                    skips.skip(problem[0], path, linenum, problem[1])
                    continue
                text, metadata, problem = _record_text(record, text_field)
                if problem is not None:
                    skips.skip(problem[0], path, linenum, problem[1])
                    continue
                yield Document(path=path, linenum=linenum, text=text, metadata=metadata,
                               input_done=source.raw_position())
    except Exception as e:
        if not _is_unreadable_file(e):
            raise
        # A truncated or corrupt compressed file: the documents read so far stand.
        skips.skip("unreadable file", path, -1, str(e))


def _read_text(path: str, skips: SkipLog, text_mode: str) -> Iterator[Document]:
    try:
        with _Source(path) as source:
            if text_mode == "document":
                data = source.stream.read()
                try:
                    yield Document(path=path, linenum=0, text=data.decode("utf-8"),
                                   input_done=source.raw_position())
                except UnicodeDecodeError as e:
                    skips.skip("bad UTF-8", path, 0, str(e))
                return
            for linenum, raw in enumerate(source.stream):
                raw = raw[:-1] if raw.endswith(b"\n") else raw
                if not raw.strip():
                    continue
                try:
                    yield Document(path=path, linenum=linenum, text=raw.decode("utf-8"),
                                   input_done=source.raw_position())
                except UnicodeDecodeError as e:
                    skips.skip("bad UTF-8", path, linenum, str(e))
    except (OSError, EOFError) as e:
        skips.skip("unreadable file", path, -1, str(e))


def _read_parquet(path: str, skips: SkipLog, text_field: str) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BuildError(f"{path}: reading Parquet needs pyarrow: pip install 'anygram[parquet]' "
                         "(or pip install pyarrow)") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        skips.skip("unreadable file", path, -1, str(e))
        return
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise BuildError(f"{path}: no {text_field!r} column (columns: {', '.join(names)}); "
                         "choose the text column with text_field=...")
    size = os.path.getsize(path)
    rows = max(parquet.metadata.num_rows, 1)
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        columns = batch.to_pydict()
        texts = columns.pop(text_field)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                skips.skip(f"{text_field!r} is not a string" if text is not None else f"{text_field!r} is null",
                           path, row + i)
                continue
            metadata = {name: _jsonable(values[i]) for name, values in columns.items()}
            yield Document(path=path, linenum=row + i, text=text, metadata=metadata,
                           input_done=size * (row + i + 1) // rows)
        row += len(texts)


def _jsonable(value: Any) -> Any:
    """Parquet values (dates, decimals, bytes, ...) as JSON: what json cannot hold becomes a string."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _read_npy(path: str, skips: SkipLog) -> Iterator[Document]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        skips.skip("unreadable file", path, -1, str(e))
        return
    if not np.issubdtype(array.dtype, np.integer):
        raise BuildError(f"{path}: pre-tokenized arrays must hold integers, not {array.dtype}")
    if array.ndim == 2:
        for row in range(array.shape[0]):
            yield Document(path=path, linenum=row, tokens=np.asarray(array[row]))
        return
    if array.ndim != 1:
        raise BuildError(f"{path}: expected a 1-D or 2-D token array, got {array.ndim} dimensions")
    bounds = _npy_bounds(path, len(array))
    for doc, (start, end) in enumerate(bounds):
        yield Document(path=path, linenum=doc, tokens=np.asarray(array[start:end]))


def _npy_bounds(path: str, length: int) -> List[Tuple[int, int]]:
    """Document ``i`` is ``tokens[bounds[i]:bounds[i+1]]``: the offsets file holds every
    document's start and then the total length (N+1 entries for N documents)."""
    offsets_path = path[: -len(".npy")] + ".offsets.npy"
    if not os.path.exists(offsets_path):
        return [(0, length)]
    bounds = np.load(offsets_path, allow_pickle=False).astype(np.int64).tolist()
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != length or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise BuildError(
            f"{offsets_path}: expected document boundaries 0 = b[0] <= b[1] <= ... <= b[N] = {length} "
            f"(each document's start, then the array's length)"
        )
    return list(zip(bounds[:-1], bounds[1:]))


PYTHON_INPUT = "<python>"  # the path of Python documents in the metadata and in skip reports


def is_document_iterable(inputs: Any) -> bool:
    """Whether build ``inputs`` are documents (an iterable of strings or dicts, e.g. a
    generator or a ``datasets`` dataset) rather than paths: a path, or a list or tuple
    of paths, is files; anything else iterable is documents."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        return False
    if isinstance(inputs, (list, tuple)):
        return not all(isinstance(i, (str, os.PathLike)) for i in inputs)
    return hasattr(inputs, "__iter__")


def read_records(records: Iterable[Any], skips: SkipLog, text_field: str = "text") -> Iterator[Document]:
    """The documents of a Python iterable of strings or dicts (the text in ``text_field``,
    the other fields the metadata), streamed; records that are not documents, texts that
    are not strings or hold lone surrogates go to ``skips`` as in files. ``input_done``
    counts the records consumed."""
    for number, record in enumerate(records):
        text, metadata, problem = _record_text(record, text_field, strings=True)
        if problem is not None:
            skips.skip(problem[0], PYTHON_INPUT, number, problem[1])
            continue
        yield Document(path=PYTHON_INPUT, linenum=number, text=text, metadata=metadata, input_done=number + 1)
