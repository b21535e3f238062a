"""A real `anygram serve` in a subprocess on a free loopback port, for the service tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``anygram serve`` with ``indexes`` (name -> path) and extra flags; ``url`` once it answers."""

    def __init__(
        self,
        indexes: Dict[str, str],
        flags: Sequence[str] = (),
        log_path: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        preload: Optional[str] = None,
        ready_timeout: float = 60.0,
    ):
        """``preload``: Python run in the server process before it starts (e.g. to make an
        engine method fail as a bug would). ``ready_timeout``: seconds to wait for it to answer."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if preload is None:
            command = [sys.executable, "-m", "anygram.cli"]
        else:
            main = "import sys, anygram.cli\nsys.exit(anygram.cli.main())"
            command = [sys.executable, "-c", f"{preload}\n{main}"]
        args = command + ["serve", "--port", str(self.port), "--no-access-log"]
        for name, path in indexes.items():
            args += ["--index", f"{name}={path}"]
        args += list(flags)
        self.log_path = log_path or os.devnull
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anygram serve exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"anygram serve did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        if self.log_path == os.devnull:
            return "(no log kept)"
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
