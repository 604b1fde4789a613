"""The started file: one line per service this tool started, ``NAME PID COMM STOP``.

``COMM`` is the process's command name when it was started (it guards against a
reused pid); ``STOP`` is ``kill`` (SIGTERM, then SIGKILL after a timeout) or
``redis-cli`` (Redis ``SHUTDOWN NOSAVE``; the name is the one the shell script
wrote, so that its state files stay readable).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imchat.ops.testbed.procs import pid_is


@dataclass(frozen=True)
class Entry:
    name: str
    pid: int  # 0 when the line held no valid pid: such an entry counts as stopped
    comm: str
    stop: str

    def line(self) -> str:
        return f"{self.name} {self.pid} {self.comm} {self.stop}"

    def running(self) -> bool:
        return pid_is(self.pid, self.comm)


def parse_line(line: str) -> Entry | None:
    """An entry, or None for a blank line; missing fields are read as empty."""
    fields = line.split(maxsplit=3)
    if not fields:
        return None
    name, pid, comm, stop = (*fields, "", "", "")[:4]
    return Entry(name, int(pid) if pid.isdigit() else 0, comm, stop)


def parse(text: str) -> list[Entry]:
    return [entry for line in text.splitlines() if (entry := parse_line(line)) is not None]


def render(entries: list[Entry]) -> str:
    return "".join(entry.line() + "\n" for entry in entries)


def read(path: Path) -> list[Entry]:
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return []


def write(path: Path, entries: list[Entry]) -> None:
    path.write_text(render(entries))


def record(path: Path, entry: Entry) -> None:
    """Append ``entry``, first dropping the entries of its service whose process is gone."""
    kept = [e for e in read(path) if e.name != entry.name or e.running()]
    write(path, [*kept, entry])


def forget(path: Path, entries: list[Entry]) -> None:
    """Remove ``entries`` from the file; remove the file once it lists nothing."""
    kept = [e for e in read(path) if e not in entries]
    if kept:
        write(path, kept)
    else:
        path.unlink(missing_ok=True)
