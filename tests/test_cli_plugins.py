"""`anygram` commands from other packages: the `anygram.commands` entry-point group.

The CLI imports no plugin by name; it finds commands through installed packages'
metadata. These tests install real distribution metadata (a `.dist-info` directory) on
the path of a real `anygram` subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def install_metadata(site: Path, name: str, entry_points: dict) -> None:
    """A distribution's metadata as pip installs it, declaring `entry_points` in the group."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[anygram.commands]\n{lines}")


def run_anygram(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]))
    return subprocess.run([sys.executable, "-m", "anygram.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_a_package_adds_a_command_through_the_entry_point_group(tmp_path):
    (tmp_path / "hello_command.py").write_text(
        'HELP = "greets NAME"\n'
        "def add_arguments(p):\n"
        '    p.add_argument("--name", required=True)\n'
        "def run(args):\n"
        '    print(f"hello {args.name}")\n'
        "    return 0\n"
    )
    install_metadata(tmp_path, "hello-command", {"hello": "hello_command"})
    done = run_anygram(tmp_path, "hello", "--name", "x")
    assert (done.returncode, done.stdout) == (0, "hello x\n"), done.stderr
    listed = run_anygram(tmp_path, "--help")
    assert "hello" in listed.stdout and "greets NAME" in listed.stdout
    # The CLI's conventions apply to it: an unknown flag is that command's error.
    mistyped = run_anygram(tmp_path, "hello", "--nme", "x")
    assert mistyped.returncode == 2 and "--name" in mistyped.stderr


def test_a_registered_command_that_cannot_be_imported_is_an_error_naming_it(tmp_path):
    install_metadata(tmp_path, "broken-command", {"broken": "no_such_module_anywhere"})
    done = run_anygram(tmp_path, "broken", "--flag")
    assert done.returncode == 2
    assert "anygram broken: error:" in done.stderr and "no_such_module_anywhere" in done.stderr


def test_the_server_package_declares_serve_in_the_group(tmp_path):
    declared = tomllib.loads((REPO / "server" / "pyproject.toml").read_text())
    entry_points = declared["project"]["entry-points"]["anygram.commands"]
    assert set(entry_points) == {"serve"}
    # Its metadata as installed, found first on the path: `anygram serve` runs the server's CLI.
    install_metadata(tmp_path, "anygram-server", entry_points)
    done = run_anygram(tmp_path, "serve", "--index", f"x={tmp_path / 'nope'}")
    assert done.returncode == 2 and "no such index directory" in done.stderr, done.stderr
