"""Resumable runs: what a long run (a build, a scan) keeps on disk so that, killed, it
continues where it stopped when run again with the same arguments.

Three pieces, used by builds (:mod:`anygram.builder`) and scans (:mod:`anygram.scan`):

* :class:`RunLock`: an exclusive lock on a file, held while the run writes, so that two
  runs never write the same files at once (the second one fails, naming the first's
  files); the operating system drops it when the process dies.
* :class:`Journal`: a JSON file of what the run has finished, tied to a *key* (every
  argument that determines the result) and replaced atomically at each record
  (:mod:`anygram.atomic`). A journal written with another key is never used.
* :class:`WorkDir` (a build): a directory beside the output named by a hash of the key,
  holding the lock, the journal and the run's files; and :class:`OutputCheckpoint`
  (a scan): a journal beside one output file, ``OUTPUT.progress.json``, and a lock on
  that output.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Type

from .atomic import write_json_atomic
from .errors import AnygramError, InvalidArgumentError
from .paths import progress_file


class RunLock:
    """An exclusive, non-blocking lock on the file at ``path`` (created if missing):
    raises ``error(message)`` when another process holds it."""

    def __init__(self, path: str, error: Type[AnygramError], message: str):
        self._file = open(path, "a+b")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise error(message) from None

    def release(self) -> None:
        self._file.close()


def remove_unless_locked(directory: str, lock_name: str) -> bool:
    """Removes ``directory`` unless a running process holds its lock file; whether it did."""
    try:
        with open(os.path.join(directory, lock_name), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(directory, ignore_errors=True)
            return True
    except BlockingIOError:
        return False
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        return True


class UnusableJournal(Exception):
    """A journal on disk that this run cannot continue: unreadable, of another version,
    or written with another key (``changed``: the key's fields that differ)."""

    def __init__(self, reason: str, changed: Optional[List[str]] = None):
        super().__init__(reason)
        self.reason = reason
        self.changed = changed or []


class Journal:
    """What a run has finished (``entries``, name → JSON value) in the JSON file ``path``
    beside the run's ``key``; each :meth:`record` replaces the file atomically.

    ``key_field`` and ``entries_field`` name the two parts in the file and ``version``
    (when given) is stored and checked: builds and scans keep the names their journals
    have always had, so that a run interrupted under an older release still resumes."""

    def __init__(self, path: str, key: Dict[str, Any], version: Optional[int] = None,
                 key_field: str = "key", entries_field: str = "steps"):
        self.path = path
        self.key = key
        self.version = version
        self.key_field = key_field
        self.entries_field = entries_field
        self.entries: Dict[str, Any] = {}

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def read(self) -> Optional[Dict[str, Any]]:
        """The entries an earlier run with the same key recorded (None: no journal).
        Raises :class:`UnusableJournal` for one that cannot be continued."""
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise UnusableJournal(f"unreadable ({e})") from None
        if not isinstance(saved, dict) or not isinstance(saved.get(self.entries_field, {}), dict):
            raise UnusableJournal("not a journal")
        if self.version is not None and saved.get("version") != self.version:
            raise UnusableJournal(f"version {saved.get('version')!r}, not {self.version}")
        theirs = saved.get(self.key_field)
        if theirs != self.key:
            theirs = theirs if isinstance(theirs, dict) else {}
            changed = sorted(k for k in set(self.key) | set(theirs) if self.key.get(k) != theirs.get(k))
            raise UnusableJournal("written with other arguments", changed)
        return saved.get(self.entries_field, {})

    def record(self, entries: Dict[str, Any]) -> None:
        """Adds ``entries`` and replaces the file (complete or not at all)."""
        self.entries.update(entries)
        saved: Dict[str, Any] = {} if self.version is None else {"version": self.version}
        saved[self.key_field] = self.key
        saved[self.entries_field] = self.entries
        write_json_atomic(self.path, saved, indent=1)


class WorkDir:
    """A resumable run's work directory beside its output: ``.NAME.KIND-HASH``, HASH a
    digest of ``key``, holding ``lock``, ``journal.json`` (the finished steps) and the
    run's files.

    Opening it discards the work directories of the same output and kind that were left
    by runs with other arguments and that no running process holds; then it takes the
    lock (``error`` when a run with the same arguments holds it) and, with ``resume``,
    continues the journal it finds (the steps are in :attr:`resumed`); a journal it cannot
    use, or ``resume=False``, empties the directory first. ``say`` reports each of these."""

    LOCK = "lock"
    JOURNAL = "journal.json"

    def __init__(self, output: str, key: Dict[str, Any], resume: bool, kind: str, error: Type[AnygramError],
                 say: Callable[[str], None], version: Optional[int] = None):
        parent, name = os.path.dirname(output), os.path.basename(output)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = os.path.join(parent, f".{name}.{kind}-{digest}")
        self.resumed: List[str] = []
        pattern = os.path.join(glob.escape(parent), f".{glob.escape(name)}.{kind}-*")
        for other in sorted(glob.glob(pattern)):
            if (other != self.path and os.path.exists(os.path.join(other, self.LOCK))
                    and remove_unless_locked(other, self.LOCK)):
                say(f"discarded an unfinished {kind} of {output} made with different arguments ({other})")
        os.makedirs(self.path, exist_ok=True)
        self._lock = RunLock(os.path.join(self.path, self.LOCK), error,
                             f"another {kind} of {output} with the same arguments is running in {self.path}")
        self.journal = Journal(os.path.join(self.path, self.JOURNAL), key, version=version)
        if self.journal.exists():
            try:
                saved = self.journal.read() if resume else None
            except UnusableJournal:
                saved = None
            if saved is not None:
                self.journal.entries = saved
                self.resumed = list(saved)
                if self.resumed:
                    say(f"resuming the {kind} of {output} after: {', '.join(self.resumed)} ({self.path})")
            else:
                say(f"starting the {kind} of {output} afresh ({'--no-resume' if not resume else 'unusable journal'})")
                self._clear()
        elif not resume:
            self._clear()

    def _clear(self) -> None:
        for name in os.listdir(self.path):
            if name != self.LOCK:
                p = os.path.join(self.path, name)
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)

    @property
    def steps(self) -> Dict[str, Any]:
        """The finished steps and what each produced."""
        return self.journal.entries

    def done(self, step: str) -> Optional[Dict[str, Any]]:
        """What ``step`` produced, or None when it has not finished."""
        return self.journal.entries.get(step)

    def finish(self, step: str, result: Dict[str, Any]) -> None:
        """Records a finished step (the journal is replaced atomically)."""
        self.journal.record({step: result})

    def release(self) -> None:
        """Lets another run continue this directory (what is finished stays)."""
        self._lock.release()

    def remove(self) -> None:
        """Deletes the directory (the run is over: published, or nothing to resume)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()


class OutputCheckpoint:
    """The resumable state of a run that writes the file ``output``: a :class:`Journal`
    at ``OUTPUT.progress.json`` (``state``) and a lock on ``output`` itself, created if
    missing, held until :meth:`release`.

    The journal describes the output: when ``output`` is absent, or with ``restart``, the
    run starts with no state. A journal written with other arguments, or unreadable, is an
    error naming what differs (``restart`` or another output path are the ways on)."""

    def __init__(self, output: str, key: Dict[str, Any], restart: bool):
        output_existed = os.path.exists(output)
        self._lock = RunLock(output, InvalidArgumentError,
                             f"another run is writing {output}: wait for it to end, or give another output path")
        self.journal = Journal(progress_file(output), key, key_field="signature", entries_field="state")
        if restart or not output_existed:
            return
        try:
            saved = self.journal.read()
        except UnusableJournal as e:
            self._lock.release()
            if e.changed:
                raise InvalidArgumentError(
                    f"{output} was written by a run with other arguments ({', '.join(e.changed)} differ); "
                    "pass restart=True to start over, or give another output path") from None
            raise InvalidArgumentError(f"{self.journal.path}, the progress of {output}, is {e.reason}: pass "
                                       "restart=True to start over, or give another output path") from None
        self.journal.entries = saved or {}

    @property
    def state(self) -> Dict[str, Any]:
        return self.journal.entries

    def save(self, **state: Any) -> None:
        """Records ``state`` (merged into what was there; the file is replaced atomically)."""
        self.journal.record(state)

    def release(self) -> None:
        self._lock.release()


@contextlib.contextmanager
def output_checkpoint(output: str, key: Dict[str, Any], restart: bool):
    """:class:`OutputCheckpoint` held for the ``with`` block."""
    checkpoint = OutputCheckpoint(output, key, restart)
    try:
        yield checkpoint
    finally:
        checkpoint.release()
