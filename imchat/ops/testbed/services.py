"""Starting each of the four services, recording each start as it happens."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imchat.ops.testbed import state
from imchat.ops.testbed.probes import etcd_healthy, kafka_up, mariadb_ok, port_open, redis_ping
from imchat.ops.testbed.procs import (
    elapsed,
    executable,
    launch,
    log_tail,
    pids_named,
    wait_until,
)
from imchat.ops.testbed.settings import (
    ETCD_TIMEOUT,
    HOST,
    MARIADB_TIMEOUT,
    MARIADBD,
    REDIS_TIMEOUT,
    TANSU_TIMEOUT,
    Config,
    Fatal,
    note,
    say,
)
from imchat.ops.testbed.state import Entry

# A fresh Debian install only lets root in through the unix socket; the tests
# connect as root@127.0.0.1 with an empty password (as on the workplace machines).
OPEN_ROOT = """CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS test; FLUSH PRIVILEGES;"""


class Run:
    """One ``up``: what it started (to roll back on failure) and its findings."""

    def __init__(self, config: Config, fresh_mariadb: bool = False, tansu: str = "") -> None:
        self.config = config
        self.fresh_mariadb = fresh_mariadb
        self.tansu = tansu
        self.started_now: list[Entry] = []

    def remember(self, entry: Entry) -> None:
        state.record(self.config.started, entry)
        self.started_now.append(entry)


# --------------------------------------------------------------- mariadb
def mariadb_ready(run: Run) -> bool:
    if mariadb_ok(run.config.ports.mariadb):
        return True
    if not run.fresh_mariadb:
        return False
    # root over the unix socket: the client installed with the server does that step
    probe = ["mariadb", "-uroot", "--connect-timeout=2", "-e", "select 1"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return False
    note(
        "fresh MariaDB install: allowing root@127.0.0.1 without a password"
        " and creating database test"
    )
    if subprocess.run(["mariadb", "-uroot", "-e", OPEN_ROOT]).returncode != 0:
        return False
    run.fresh_mariadb = False
    return mariadb_ok(run.config.ports.mariadb)


def new_pid(comm: str, tries: int = 50) -> int | None:
    """The newest process named ``comm`` once one shows up (5 s at most)."""
    for _ in range(tries):
        pids = pids_named(comm)
        if pids:
            return pids[-1]
        time.sleep(0.1)
    return None


def start_mariadbd(port: int) -> None:
    """mariadbd in the background through start-stop-daemon, as Debian's init does."""
    if shutil.which("id") and subprocess.run(["id", "mysql"], capture_output=True).returncode == 0:
        try:
            os.makedirs("/run/mysqld", exist_ok=True)
            shutil.chown("/run/mysqld", "mysql", "mysql")
        except OSError:
            pass  # mariadbd says itself what it lacks
    command = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADBD]
    options = ["--", f"--bind-address={HOST}", f"--port={port}"]
    try:
        rc = subprocess.run([*command, *options], stdout=subprocess.DEVNULL).returncode
    except OSError as exc:
        raise Fatal(1, f"cannot run start-stop-daemon ({exc.strerror or exc})") from exc
    if rc != 0:
        raise Fatal(1, f"start-stop-daemon could not start {MARIADBD} (exit {rc})")


def start_mariadb(run: Run) -> None:
    t0 = time.monotonic()
    port = run.config.ports.mariadb
    if not executable(MARIADBD):
        raise Fatal(1, f"{MARIADBD} is missing")
    before = pids_named("mariadbd")
    start_mariadbd(port)
    pid = None
    if not before:
        pid = new_pid("mariadbd")
        if pid is None:
            raise Fatal(
                1,
                "mariadbd exited at once after start-stop-daemon"
                " (see /var/lib/mysql/*.err or syslog)",
            )
        run.remember(Entry("mariadb", pid, "mariadbd", "kill"))
    else:
        pids = " ".join(map(str, before))
        note(
            f"a mariadbd process already exists (pid {pids}) but root@{HOST}:{port}"
            " did not answer; waiting for it"
        )
    rc = wait_until(MARIADB_TIMEOUT, pid, lambda: mariadb_ready(run))
    if rc == 2:
        raise Fatal(1, f"mariadbd (pid {pid}) exited before answering on {HOST}:{port}")
    if rc == 1:
        raise Fatal(
            1, f"MariaDB did not answer 'select 1' as root@{HOST} within {MARIADB_TIMEOUT}s"
        )
    if pid:
        say(f"mariadb: started (pid {pid}, {elapsed(t0)}s)")
    else:
        say("mariadb: already running (was starting up)")


# ----------------------------------------------------------------- redis
def start_redis(run: Run) -> None:
    t0 = time.monotonic()
    port, where = run.config.ports.redis, run.config.state
    if port_open(port):
        raise Fatal(1, f"{HOST}:{port} is taken by something that does not answer Redis PING")
    pidfile, log = where / "redis.pid", where / "redis.log"
    pidfile.unlink(missing_ok=True)
    command = [
        "redis-server", "--daemonize", "yes", "--bind", HOST, "--port", str(port),
        "--save", "", "--appendonly", "no", "--dir", str(where),
        "--logfile", str(log), "--pidfile", str(pidfile),
    ]  # fmt: skip
    try:
        started = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        rc = started.returncode
    except OSError:
        rc = 127
    if rc != 0:
        log_tail(log)
        raise Fatal(1, "redis-server failed to start")
    rc = wait_until(REDIS_TIMEOUT, None, lambda: redis_ping(port))
    pid = read_pid(pidfile)
    if pid:
        run.remember(Entry("redis", pid, "redis-server", "redis-cli"))
    if rc != 0:
        log_tail(log)
        raise Fatal(1, f"Redis did not answer PING on {HOST}:{port} within {REDIS_TIMEOUT}s")
    say(f"redis: started (pid {pid or '?'}, {elapsed(t0)}s)")


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# ------------------------------------------------------- etcd and tansu
def start_daemon(
    run: Run, name: str, command: Sequence[str], probe: Callable[[], bool], not_ready: str
) -> None:
    """Launch a foreground daemon, record it, wait until ``probe`` holds."""
    t0 = time.monotonic()
    log = run.config.state / f"{name}.log"
    pid = launch(run.config.state, log, command)
    # the kernel's command name: the binary's base name, cut at 15 characters
    run.remember(Entry(name, pid, os.path.basename(command[0])[:15], "kill"))
    timeout = ETCD_TIMEOUT if name == "etcd" else TANSU_TIMEOUT
    rc = wait_until(timeout, pid, probe)
    if rc != 0:
        log_tail(log)
        if rc == 2:
            raise Fatal(1, f"{name} exited during startup (log: {log})")
        raise Fatal(1, f"{name} {not_ready} within {timeout}s (log: {log})")
    say(f"{name}: started (pid {pid}, {elapsed(t0)}s)")


def start_etcd(run: Run) -> None:
    ports, where = run.config.ports, run.config.state
    if port_open(ports.etcd):
        raise Fatal(1, f"{HOST}:{ports.etcd} is taken by something that is not a healthy etcd")
    shutil.rmtree(where / "etcd-data", ignore_errors=True)
    client, peer = f"http://{HOST}:{ports.etcd}", f"http://{HOST}:{ports.etcd_peer}"
    command = [
        "etcd", "--name", "imchat-test", "--data-dir", str(where / "etcd-data"),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"imchat-test={peer}", "--initial-cluster-state", "new",
    ]  # fmt: skip
    start_daemon(run, "etcd", command, lambda: etcd_healthy(ports.etcd), "was not healthy")


def start_tansu(run: Run) -> None:
    port = run.config.ports.kafka
    if port_open(port):
        taken = f"{HOST}:{port} is taken by something that does not answer as a Kafka broker"
        raise Fatal(1, taken)
    url = f"tcp://{HOST}:{port}"
    command = [
        run.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    not_ready = f"did not answer a metadata request on {HOST}:{port}"
    start_daemon(run, "tansu", command, lambda: kafka_up(port), not_ready)


STARTERS: dict[str, Callable[[Run], None]] = {
    "mariadb": start_mariadb,
    "redis": start_redis,
    "etcd": start_etcd,
    "tansu": start_tansu,
}
