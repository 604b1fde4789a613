"""The three commands, ``up``, ``down`` and ``status``, and ``main``."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imchat.ops.testbed import state
from imchat.ops.testbed.install import Apt, cannot_install, find_tansu, install_plan
from imchat.ops.testbed.probes import answering, etcd_healthy, redis_pid, redis_shutdown
from imchat.ops.testbed.procs import elapsed, have, locked, send, terminate
from imchat.ops.testbed.services import STARTERS, Run
from imchat.ops.testbed.settings import (
    APT_LOCK_TIMEOUT,
    EX_USAGE,
    PROG,
    SERVICES,
    Config,
    Fatal,
    load_config,
    note,
    say,
)
from imchat.ops.testbed.state import Entry

USAGE = "usage: scripts/test-services up|down|status (or python -m imchat.ops.testbed ...)"


def stop_entry(entry: Entry, config: Config, to_stderr: bool = False) -> bool:
    """Stop a recorded service; True once it is gone (or was already)."""
    out = sys.stderr if to_stderr else sys.stdout
    if not entry.running():
        print(f"{entry.name}: already stopped", file=out, flush=True)
        return True

    def ask() -> None:
        # SHUTDOWN goes only to a Redis that is this very process: the port
        # may have been configured otherwise when it was started.
        port = config.ports.redis
        if entry.stop == "redis-cli" and redis_pid(port) == entry.pid:
            redis_shutdown(port)
        else:
            send(entry.pid, signal.SIGTERM)

    return terminate(entry.name, entry.pid, ask, out)


# -------------------------------------------------------------------- up
def cmd_up(config: Config) -> int:
    t0 = time.monotonic()
    config.state.mkdir(parents=True, exist_ok=True)
    with locked(config.state, APT_LOCK_TIMEOUT):
        bring_up(config)
    note(f"up in {elapsed(t0)}s (state: {config.state})")
    return 0


def bring_up(config: Config) -> None:
    probes = answering(config.ports)
    needed = [name for name in SERVICES if not probes[name]()]
    # 1. what would have to be installed, and can it be? Fail before starting anything.
    plan = install_plan("mariadb" in needed)
    refusal = cannot_install(plan, os.geteuid(), have("apt-get"))
    if refusal:
        raise Fatal(2, refusal)
    run = Run(config, plan.fresh_mariadb)
    if "tansu" in needed:
        run.tansu = find_tansu(config)  # the broker comes from the venv
    try:
        # 2. install, 3. start what is (still) not answering
        if plan.packages:
            Apt(config.state).install(plan.packages)
        for name in SERVICES:
            if name in needed and not probes[name]():
                STARTERS[name](run)
            else:
                say(f"{name}: already running")
    except BaseException:
        rollback(run)
        raise
    (config.state / "apt.last").unlink(missing_ok=True)


def rollback(run: Run) -> None:
    """Stop what this ``up`` started, newest first, and forget it."""
    if not run.started_now:
        return
    note("up failed; stopping what this run started")
    for entry in reversed(run.started_now):
        stop_entry(entry, run.config, to_stderr=True)
    state.forget(run.config.started, run.started_now)
    data = run.config.state / "etcd-data"
    if data.is_dir() and not etcd_healthy(run.config.ports.etcd):
        shutil.rmtree(data, ignore_errors=True)


# ------------------------------------------------------------------ down
def cmd_down(config: Config) -> int:
    if not config.state.is_dir():
        say(f"nothing to stop (no {config.state})")
        return 0
    with locked(config.state, APT_LOCK_TIMEOUT):
        return stop_recorded(config)


def stop_recorded(config: Config) -> int:
    started = config.started
    if not started.is_file() or started.stat().st_size == 0:
        started.unlink(missing_ok=True)
        say(f"nothing to stop (no services recorded in {started})")
        return 0
    failed = [e for e in reversed(state.read(started)) if not stop_entry(e, config)]
    shutil.rmtree(config.state / "etcd-data", ignore_errors=True)
    if failed:
        state.write(started, failed)
        raise Fatal(1, f"some services could not be stopped; they stay listed in {started}")
    started.unlink(missing_ok=True)
    return 0


# ---------------------------------------------------------------- status
def cmd_status(config: Config) -> int:
    entries = state.read(config.started)
    probes = answering(config.ports)
    all_up = True
    for name in SERVICES:
        ours = [e for e in entries if e.name == name and e.running()]
        extra = f" (started by {PROG}, pid {ours[-1].pid})" if ours else ""
        if probes[name]():
            say(f"{name}: up{extra}")
        else:
            say(f"{name}: down")
            all_up = False
    return 0 if all_up else 1


COMMANDS: dict[str, Callable[[Config], int]] = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
}


def main(
    argv: Sequence[str], environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Run the command ``argv[0]`` names (further arguments are ignored); its exit code."""
    command = COMMANDS.get(argv[0] if argv else "")
    if command is None:
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    try:
        config = load_config(os.environ if environ is None else environ, cwd or Path.cwd())
        return command(config)
    except Fatal as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr, flush=True)
        return exc.rc
