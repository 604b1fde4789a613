"""Processes: is a pid alive, launch a daemon, wait for it, stop it; the lock; log tails."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from imchat.ops.testbed.settings import PROG, STOP_TIMEOUT, Fatal, note, say

# Launched daemons: kept referenced so that no Popen is collected (and warns)
# while its process, which outlives this one, still runs.
LAUNCHED: list[subprocess.Popen[bytes]] = []


def have(name: str) -> bool:
    """An executable file named ``name`` is on PATH."""
    return shutil.which(name) is not None


def executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def pid_alive(pid: int) -> bool:
    """A zombie counts as gone: our daemons are reparented to pid 1, which may
    reap them only seconds later."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(") ")[2][:1] != "Z"


def comm_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return None


def pid_is(pid: int, comm: str) -> bool:
    """``pid`` is alive and its command name is ``comm`` (guards against pid reuse)."""
    return pid_alive(pid) and comm_of(pid) == comm


def pids_named(comm: str) -> list[int]:
    """The live processes whose command name is ``comm``, oldest pid first (pgrep -x)."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if comm_of(pid) == comm and pid_alive(pid)]


def log_tail(path: Path, lines: int = 20) -> None:
    """The end of a log file, on stderr."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    if text:
        note(f"last lines of {path}:")
        tail = text.splitlines()[-lines:]
        print("".join(f"    {line}\n" for line in tail), end="", file=sys.stderr, flush=True)


def child_environment() -> dict[str, str]:
    """Our environment without ETCD_*/ETCDCTL_*: etcd refuses to start when a
    variable shadows one of its flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


def launch(workdir: Path, log: Path, command: Sequence[str]) -> int:
    """Start ``command`` detached (own session, stdio to ``log``); its pid."""
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(command),
                cwd=workdir,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        raise Fatal(1, f"could not start {command[0]} ({exc.strerror or exc})") from exc
    LAUNCHED.append(process)
    return process.pid


def wait_until(timeout: float, pid: int | None, probe: Callable[[], bool]) -> int:
    """0 once ``probe`` holds, 2 if ``pid`` died first, 1 past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return 0
        if pid is not None and not pid_alive(pid):
            return 2
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.1)


def elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:.1f}"


def terminate(name: str, pid: int, ask: Callable[[], None], out: IO[str] | None = None) -> bool:
    """Ask ``pid`` to stop, SIGKILL it after STOP_TIMEOUT; True once it is gone."""
    t0 = time.monotonic()
    ask()
    while pid_alive(pid) and time.monotonic() - t0 < STOP_TIMEOUT:
        time.sleep(0.1)
    if pid_alive(pid):
        note(f"{name} (pid {pid}) did not stop within {STOP_TIMEOUT}s, sending SIGKILL")
        send(pid, signal.SIGKILL)
        time.sleep(0.5)
    if pid_alive(pid):
        say_to(out, f"{name}: FAILED to stop (pid {pid})")
        return False
    say_to(out, f"{name}: stopped (pid {pid}, {elapsed(t0)}s)")
    return True


def send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):  # gone already
        os.kill(pid, sig)


def say_to(out: IO[str] | None, message: str) -> None:
    if out is None:
        say(message)
    else:
        print(message, file=out, flush=True)


@contextlib.contextmanager
def locked(state: Path, timeout: float) -> Iterator[None]:
    """Serialise up/down between concurrent callers. The descriptor is not
    inherited by the services started, so the lock ends with the command."""
    with (state / "lock").open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Fatal(1, f"another '{PROG}' holds {state / 'lock'}") from None
                time.sleep(0.1)
        yield
