"""``python -m benchmarks run [--scenario S ...] [--backend embedded|production|all] [--quick]``
and ``python -m benchmarks report [--input FILE]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import scenarios, servers

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def run(args: argparse.Namespace) -> Path:
    """The ceiling first, then each backend, all in this one run."""
    params = scenarios.QUICK if args.quick else scenarios.FULL
    if args.idle:
        params = scenarios.Params(**{**params.__dict__, "idle": args.idle})
    # A quick run proves the harness for the smoke test: the core scenarios
    # unless others are named (the issue 12 ones seed thousands of rows).
    default = scenarios.CORE if args.quick else scenarios.SCENARIOS
    names = [s for s in scenarios.SCENARIOS if s in (args.scenario or default)]
    backends = ["embedded", "production"] if args.backend == "all" else [args.backend]
    started = time.time()
    report: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "commit": git_commit(),
        "quick": args.quick,
        "scenarios": names,
        "params": params.__dict__,
        "machine": machine(),
    }
    for kind in ["echo", *backends]:
        print(f"{kind}:", file=sys.stderr)
        with servers.start(kind) as server:
            report["ceiling" if kind == "echo" else kind] = scenarios.run_all(server, params, names)
            if args.profile and kind == "production":
                report["profile"] = scenarios.profile(server, params)
    report["seconds"] = time.time() - started
    out = (
        Path(args.output) if args.output else RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run scenarios, write JSON under benchmarks/results/")
    run_cmd.add_argument("--scenario", action="append", choices=scenarios.SCENARIOS)
    run_cmd.add_argument("--backend", choices=["embedded", "production", "all"], default="all")
    run_cmd.add_argument("--quick", action="store_true", help="tiny counts: proves the harness")
    run_cmd.add_argument("--idle", type=int, help="idle connections (default 10,000)")
    run_cmd.add_argument("--profile", action="store_true", help="py-spy the production set")
    run_cmd.add_argument("--output", help="the JSON file to write (default: a new one)")
    report_cmd = commands.add_parser("report", help="render docs/benchmarks.md and .png")
    report_cmd.add_argument("--input", help="a results JSON (default: the newest full run)")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        from benchmarks import report

        report.render(Path(args.input).resolve() if args.input else None)


if __name__ == "__main__":
    main()
