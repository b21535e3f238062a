"""The query data plane between a :class:`~anygram.distributed.engine.ClusterEngine` and its
shard groups: length-prefixed msgpack frames over persistent TCP connections.

Ray stays the control plane (it places the shard-group actors, restarts them, and tells the
driver each one's address); a query goes straight from the driver to the groups' sockets,
because a Ray actor call alone costs more than the 1 ms a cluster query may add.

A frame is ``MAGIC``, the body's length (u64, little-endian) and the body, msgpack of plain
values: None, bools, ints, floats, str, bytes, lists, dicts, and as extension types tuples,
integers beyond 64 bits, and numpy arrays and scalars as a dtype/shape header and their raw
bytes (numeric, boolean and fixed-width string dtypes only, never objects). Nothing is
unpickled: a frame can only make values, and the shard group checks a request's shape and
its method names against its allow-list before calling anything.

Security: the port is unauthenticated (anyone who reaches it can run queries on the group's
shards, nothing else). The shard group binds its node's IP as Ray reports it (127.0.0.1 for
a loopback cluster), never 0.0.0.0, so put the cluster on a private network, as Ray's own
ports must be.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import msgpack
import numpy as np

from .. import errors as anygram_errors
from ..errors import AnygramError, InternalError, InvalidArgumentError, ShardGroupError

MAGIC = b"AGQ1"
HEADER = struct.Struct("<4sQ")
# The largest request a shard group reads (a batch of millions of queries fits); a frame that
# claims more is refused before anything is allocated for it.
MAX_REQUEST_BYTES = 1 << 30
# How long a shard group waits on a frame's next bytes (and a reply's client) before dropping
# the connection: a stalled or malicious client holds a connection's thread no longer.
READ_TIMEOUT_S = 60.0
# Connections a shard group serves at once (a thread each); beyond, new ones are closed.
MAX_CONNECTIONS = 256
# How many idle connections a client keeps per group (one per thread that queried at once).
MAX_IDLE = 16

_TUPLE, _NDARRAY, _NPSCALAR, _BIGINT = 1, 2, 3, 4
_SAFE_DTYPE_KINDS = frozenset("biufcSU")


class FrameError(InvalidArgumentError):
    """A frame that is not a well-formed anygram query frame."""


# -- encoding ---------------------------------------------------------------------------------

def _default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        header = _pack([obj.dtype.str, list(obj.shape)])
        return msgpack.ExtType(_NDARRAY, struct.pack("<I", len(header)) + header + obj.tobytes(order="C"))
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return msgpack.ExtType(_NPSCALAR, _pack([obj.dtype.str, obj.tobytes()]))
    if isinstance(obj, int):
        if -(1 << 63) <= obj < (1 << 64):
            return int(obj)  # an int subclass
        return msgpack.ExtType(_BIGINT, str(int(obj)).encode())
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    raise TypeError(f"a cluster query cannot carry a {type(obj).__name__}")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in _SAFE_DTYPE_KINDS or dtype.hasobject:
        raise TypeError(f"a cluster query cannot carry arrays of dtype {dtype}")


def _pack(obj: Any) -> bytes:
    # strict_types: tuples and int/float/dict subclasses go through _default, so tuples stay tuples.
    return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _NDARRAY:
        (size,) = struct.unpack_from("<I", data)
        dtype_str, shape = _unpack(data[4:4 + size])
        dtype = np.dtype(dtype_str)
        _check_dtype(dtype)
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"bad array shape {shape!r}")
        return np.frombuffer(data, dtype=dtype, offset=4 + size).reshape(shape).copy()
    if code == _NPSCALAR:
        dtype_str, raw = _unpack(data)
        dtype = np.dtype(dtype_str)
        _check_dtype(dtype)
        (value,) = np.frombuffer(raw, dtype=dtype, count=1)
        return value
    if code == _BIGINT:
        return int(data.decode("ascii"))
    raise ValueError(f"unknown extension type {code}")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def encode_frame(value: Any) -> bytes:
    body = _pack(value)
    return HEADER.pack(MAGIC, len(body)) + body


def decode_body(body: bytes) -> Any:
    """A frame's body as values; :class:`FrameError` for anything that is not one."""
    try:
        return _unpack(body)
    except Exception as e:  # msgpack's and our checks' errors alike: the frame is not ours
        raise FrameError(f"malformed query frame: {type(e).__name__}: {e}") from None


def _frame_length(header: bytes, limit: Optional[int]) -> int:
    magic, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(f"not an anygram query frame (it starts {bytes(header[:4])!r})")
    if limit is not None and length > limit:
        raise FrameError(f"a frame of {length} bytes is over the limit of {limit}")
    return length


# Errors a reply may name: anygram's own and the builtins an engine's argument checks raise.
_ERRORS = {cls.__name__: cls for cls in vars(anygram_errors).values()
           if isinstance(cls, type) and issubclass(cls, AnygramError)}
_ERRORS.update({cls.__name__: cls for cls in (TypeError, ValueError, OverflowError, IndexError, KeyError)})


def _error_reply(error: BaseException) -> bytes:
    # The nearest class the client knows (a FrameError is an InvalidArgumentError there).
    known = next((cls for cls in type(error).__mro__ if _ERRORS.get(cls.__name__) is cls), None)
    if known is None:
        return encode_frame([1, "InternalError", f"{type(error).__name__}: {error}"])
    return encode_frame([1, known.__name__, str(error.args[0]) if len(error.args) == 1 else str(error)])


def _reply_value(reply: Any) -> Any:
    """A decoded reply's value, or the error it names raised as its class."""
    if isinstance(reply, list) and len(reply) == 2 and reply[0] == 0:
        return reply[1]
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == 1:
        raise _ERRORS.get(reply[1], InternalError)(reply[2])
    raise InternalError(f"a shard group sent a malformed reply: {reply!r:.200}")


# -- the shard group's side -------------------------------------------------------------------

class QueryServer:
    """Answers query frames on ``host`` (an ephemeral port). A thread accepts connections and
    each connection gets a thread of its own (a client keeps one connection per thread that
    queries, so queries from several client threads run at once, as on one machine); each
    complete frame's request is passed to ``handle`` and its value (or error) sent back on
    the same connection. A body that is not a valid request gets an error reply; a frame
    that is not ours, or that stalls mid-way for ``READ_TIMEOUT_S``, closes its connection.
    The server goes on either way."""

    def __init__(self, handle: Callable[[Any], Any], host: str, max_connections: int = MAX_CONNECTIONS):
        self._handle = handle
        self._max_connections = max_connections
        self._listener = socket.create_server((host, 0))
        self.address: Tuple[str, int] = self._listener.getsockname()[:2]
        self._connections: set = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="anygram-query-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # e.g. out of descriptors for a moment
                continue
            with self._lock:
                if self._closed or len(self._connections) >= self._max_connections:
                    conn.close()
                    continue
                self._connections.add(conn)
            threading.Thread(target=self._serve_connection, args=(conn,), name="anygram-query-conn",
                             daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(conn)  # a client host that vanishes frees its thread
            while True:
                conn.settimeout(None)  # idle between requests: as long as the client likes
                first = conn.recv(HEADER.size)
                if not first:
                    return
                conn.settimeout(READ_TIMEOUT_S)
                header = first + _recv_exactly(conn, HEADER.size - len(first))
                length = _frame_length(header, MAX_REQUEST_BYTES)
                conn.sendall(self._answer(_recv_exactly(conn, length)))
        except (OSError, FrameError):
            return  # the peer went away, stalled, or does not speak this protocol
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _answer(self, body: bytes) -> bytes:
        try:
            value = self._handle(decode_body(body))
        except Exception as e:
            return _error_reply(e)
        try:
            return encode_frame([0, value])
        except Exception as e:
            return _error_reply(InternalError(f"a shard group's answer could not be encoded: {e}"))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, set()
        self._listener.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes its thread, which closes it
            except OSError:
                pass


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    """``size`` bytes, read as they come (a frame's length is checked against the limit
    before this is called, so a claimed size allocates nothing)."""
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the peer closed the connection mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the client's side ------------------------------------------------------------------------

def _keepalive(sock: socket.socket) -> None:
    """A peer host that vanishes mid-query is noticed by TCP within ~25 s (Linux's options)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Channel:
    """A shard group's address and the idle connections to it: each round takes its own
    (threads never share one) and gives it back when the reply was read whole. Forked
    children drop the connections they inherited and open their own."""

    def __init__(self, name: str, address: Tuple[str, int]):
        self.name = name
        self.address = (str(address[0]), int(address[1]))
        self._idle: List[socket.socket] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self, timeout: float) -> socket.socket:
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()  # the parent's: left to it, not closed here
            if self._idle:
                return self._idle.pop()
            address = self.address
        sock = socket.create_connection(address, timeout=max(timeout, 0.001))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _keepalive(sock)
        sock.setblocking(False)
        return sock

    def give(self, sock: socket.socket) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(sock)
                return
        sock.close()

    def moved(self, address: Tuple[str, int]) -> None:
        """The group's (restarted) actor listens at ``address``: the old connections go."""
        with self._lock:
            self.address = (str(address[0]), int(address[1]))
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = (self._idle if self._pid == os.getpid() else []), []
        for sock in idle:
            sock.close()


class Lost:
    """A round's outcome for a group whose connection failed (refused, reset, closed)."""

    def __init__(self, reason: str):
        self.reason = reason


class _Exchange:
    __slots__ = ("channel", "sock", "out", "sent", "header", "body", "got", "outcome")

    def __init__(self, channel: Channel, frame: bytes):
        self.channel = channel
        self.sock: Optional[socket.socket] = None
        self.out = memoryview(frame)
        self.sent = 0
        self.header = bytearray(HEADER.size)
        self.body: Optional[bytearray] = None
        self.got = 0
        self.outcome: Any = None

    def fail(self, reason: str) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.outcome = Lost(reason)

    def send_some(self) -> bool:
        """Sends what the socket takes; True once the whole request is out."""
        while self.sent < len(self.out):
            try:
                self.sent += self.sock.send(self.out[self.sent:])
            except (BlockingIOError, InterruptedError):
                return False
        return True

    def read_some(self) -> bool:
        """Reads what arrived; True once the whole reply is in (``outcome`` set)."""
        while True:
            target = self.header if self.body is None else self.body
            if self.got < len(target):
                try:
                    n = self.sock.recv_into(memoryview(target)[self.got:])
                except (BlockingIOError, InterruptedError):
                    return False
                if n == 0:
                    raise ConnectionResetError("the shard group closed the connection")
                self.got += n
                continue
            if self.body is None:
                self.body = bytearray(_frame_length(bytes(self.header), None))
                self.got = 0
                continue
            self.outcome = decode_body(self.body)
            self.channel.give(self.sock)
            self.sock = None
            return True


def round_trip(requests: Sequence[Tuple[Channel, Any]], timeout: float) -> List[Any]:
    """Sends each request to its channel's group and reads every reply, all at once (one
    selector, non-blocking sockets), within ``timeout`` seconds for the whole round.
    Returns per request its value or a :class:`Lost` (its connection failed: the caller
    may find the group again and retry). A group's error reply is raised (the first one,
    after every reply was read, so that no connection is left mid-reply); a round that
    runs out of time raises :class:`ShardGroupError` naming the groups it waited on."""
    deadline = time.monotonic() + timeout
    exchanges = [_Exchange(channel, encode_frame(request)) for channel, request in requests]
    selector = selectors.DefaultSelector()
    try:
        for ex in exchanges:
            try:
                ex.sock = ex.channel.take(deadline - time.monotonic())
                if ex.send_some():
                    selector.register(ex.sock, selectors.EVENT_READ, ex)
                else:
                    selector.register(ex.sock, selectors.EVENT_WRITE, ex)
            except OSError as e:
                ex.fail(f"{type(e).__name__}: {e}")
        waiting = len(selector.get_map())
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = [f"{ex.channel.name} at {ex.channel.address[0]}:{ex.channel.address[1]}"
                        for ex in exchanges if ex.sock is not None]
                raise ShardGroupError(f"no answer within {timeout:g} s from {', '.join(late)}")
            for key, events in selector.select(remaining):
                ex = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        if ex.send_some():
                            selector.modify(ex.sock, selectors.EVENT_READ, ex)
                        continue
                    sock = ex.sock
                    if ex.read_some():
                        selector.unregister(sock)
                        waiting -= 1
                except (OSError, FrameError) as e:
                    selector.unregister(ex.sock)
                    ex.fail(f"{type(e).__name__}: {e}")
                    waiting -= 1
    finally:
        for ex in exchanges:
            if ex.sock is not None:  # mid-exchange: its connection cannot be reused
                ex.sock.close()
                ex.sock = None
        selector.close()
    return [ex.outcome if isinstance(ex.outcome, Lost) else _Reply(ex.outcome) for ex in exchanges]


class _Reply:
    __slots__ = ("decoded",)

    def __init__(self, decoded: Any):
        self.decoded = decoded


def reply_values(outcomes: Sequence[Any]) -> List[Any]:
    """The replies' values (Lost entries kept), raising the first error a group replied."""
    out = []
    first_error: Optional[BaseException] = None
    for outcome in outcomes:
        if isinstance(outcome, _Reply):
            try:
                outcome = _reply_value(outcome.decoded)
            except Exception as e:
                first_error = first_error or e
        out.append(outcome)
    if first_error is not None:
        raise first_error
    return out
