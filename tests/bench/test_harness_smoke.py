"""The benchmark harness works: every scenario in --quick mode on the embedded
default (and its echo ceiling), with tiny counts. No assertion on timings:
only that the harness ran, counted what it sent and wrote its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    argv = [sys.executable, "-m", "benchmarks", "run", "--quick", "--backend", "embedded"]
    done = subprocess.run(
        [*argv, "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def test_run_describes_itself(results: dict[str, Any]) -> None:
    assert results["quick"] is True
    assert results["machine"]["cores"] >= 1
    assert results["command"].startswith("python -m benchmarks run")
    assert set(results) >= {"ceiling", "embedded", "params", "started"}


@pytest.mark.parametrize("side", ["ceiling", "embedded"])
def test_direct_counts_every_message(results: dict[str, Any], side: str) -> None:
    direct = results[side]["direct"]
    assert direct["errors"] == 0
    assert direct["sent"] > 0
    assert direct["acked"] == direct["sent"]
    assert direct["delivered"] == direct["expected_deliveries"] == direct["sent"]
    assert direct["rate_per_s"] > 0 and 0 < direct["p50_ms"] <= direct["p99_ms"]
    for fixed in direct["fixed_rates"]:
        assert fixed["delivered"] == fixed["sent"] > 0
        assert 0 < fixed["p50_ms"] <= fixed["p99_ms"] <= fixed["p999_ms"]


@pytest.mark.parametrize("side", ["ceiling", "embedded"])
def test_idle_holds_every_connection(results: dict[str, Any], side: str) -> None:
    idle = results[side]["idle"]
    assert idle["connections"] == idle["requested"] == results["params"]["idle"]
    assert idle["workers"] == 1
    assert idle["rss_after_mb"] > 0


@pytest.mark.parametrize("side", ["ceiling", "embedded"])
def test_fanout_reaches_every_member(results: dict[str, Any], side: str) -> None:
    fanout = results[side]["fanout"]
    assert fanout["members"] == results["params"]["group"]
    assert fanout["acked"] == fanout["sent"] > 0
    assert (
        fanout["delivered"]
        == fanout["expected_deliveries"]
        == fanout["sent"] * (fanout["members"] - 1)
    )
    assert fanout["p50_ms"] > 0


@pytest.mark.parametrize("side", ["ceiling", "embedded"])
def test_pending_are_all_pushed_before_synced(results: dict[str, Any], side: str) -> None:
    pending = results[side]["pending"]
    assert pending["synced_count"] == pending["pending"] == results["params"]["pending"]
    assert pending["seconds"] > 0
    if side == "embedded":
        assert pending["pushed"] == pending["acked"] == pending["pending"]
