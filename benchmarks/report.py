"""``python -m benchmarks report``: docs/benchmarks.md and docs/benchmarks.png
from a results JSON (the newest full run unless one is named)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC, PLOT = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png"
BACKENDS = ("embedded", "production")
Run = dict[str, Any]


def is_full(run: Run) -> bool:
    """Not --quick, and every core scenario (runs before issue 12 name none)."""
    core = {"direct", "idle", "fanout", "pending"}
    return not run.get("quick") and core <= set(run.get("scenarios", core))


def newest_full_run() -> Path:
    runs = sorted(RESULTS.glob("run-*.json"))
    full = [p for p in runs if is_full(json.loads(p.read_text()))]
    if not full:
        raise SystemExit("no full run under benchmarks/results/: run `make bench` first")
    return full[-1]


def figures(run: Run, side: str) -> list[tuple[str, str, float | None, bool]]:
    """(figure, unit, value, higher_is_better) of one side (ceiling or a backend)."""
    data = {
        k: v for k, v in run.get(side, {}).items() if not (isinstance(v, dict) and "error" in v)
    }
    rows: list[tuple[str, str, float | None, bool]] = []
    direct = data.get("direct")
    if direct:
        rows.append(("b. direct messages, closed loop", "msg/s", direct["rate_per_s"], True))
        for fixed in direct["fixed_rates"]:
            rate = fixed["rate_per_s"]
            for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
                rows.append((f"b. latency {label} at {rate} msg/s", "ms", fixed.get(key), False))
    if "idle" in data:
        count = data["idle"]["requested"]
        rows.append(
            (
                f"c. memory per idle connection ({count:,})",
                "KB",
                data["idle"]["kb_per_connection"],
                False,
            )
        )
    if "fanout" in data:
        fan = data["fanout"]
        rows.append(
            (
                f"d. fan-out, {fan['members']:,}-member group",
                "deliveries/s",
                fan["rate_per_s"],
                True,
            )
        )
        rows.append(("d. fan-out latency p99", "ms", fan.get("p99_ms"), False))
    if "pending" in data:
        count = data["pending"]["pending"]
        rows.append(
            (
                f"e. reconnect with {count:,} pending: until synced",
                "s",
                data["pending"]["seconds"],
                False,
            )
        )
    return rows + history_figures(run, data)


def history_figures(run: Run, data: Run) -> list[tuple[str, str, float | None, bool]]:
    """Issue 12's: the conversation list, history pages, the 10,000-member group."""
    params, rows = run.get("params", {}), []
    percentile = (("p50_ms", "p50"), ("p99_ms", "p99"))
    if "conversations" in data:
        count = params.get("conversations", 0)
        for key, label in percentile:
            name = f"f. conversation list, first 50 of {count:,}, {label}"
            rows.append((name, "ms", data["conversations"].get(key), False))
    if "history" in data:
        count = params.get("history", 0)
        for page, what in (("newest", "newest"), ("random", "before a random seq")):
            for key, label in percentile:
                name = f"g. history page of 50 of {count:,}, {what}, {label}"
                rows.append((name, "ms", data["history"][page].get(key), False))
    if "biggroup" in data:
        big = data["biggroup"]
        title = f"h. {params.get('big_group', 0):,}-member group, {big['online']:,} online"
        rows.append((title, "deliveries/s", big["rate_per_s"], True))
        rows.append((f"{title}, latency p99", "ms", big.get("p99_ms"), False))
    return rows


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def table(run: Run) -> list[str]:
    """One row per figure: the ceiling, each backend and its ratio to the ceiling."""
    sides = {b: {n: v for n, _, v, _ in figures(run, b)} for b in BACKENDS if b in run}
    head = "| figure | unit | ceiling (bare echo) |"
    rule = "|---|---|---|"
    for backend in sides:
        head += f" {backend} | {backend} / ceiling |"
        rule += "---|---|"
    lines = [head, rule]
    for name, unit, value, _ in figures(run, "ceiling"):
        line = f"| {name} | {unit} | {fmt(value)} |"
        for values in sides.values():
            mine = values.get(name)
            ratio = f"{mine / value:.2f}" if mine is not None and value else "-"
            line += f" {fmt(mine)} | {ratio} |"
        lines.append(line)
    return lines


def targets(run: Run) -> list[str]:
    """The issues' targets on the production path, met or missed (those measured)."""
    prod, ceiling, emb = run.get("production", {}), run.get("ceiling", {}), run.get("embedded", {})
    if not prod:
        return ["(no production run in this file)"]
    checks = core_targets(prod, ceiling, emb) + history_targets(prod)
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {what} | {got} | {'yes' if ok else '**no**'} |" for what, got, ok in checks]
    return lines


def core_targets(prod: Run, ceiling: Run, emb: Run) -> list[tuple[str, str, bool]]:
    checks: list[tuple[str, str, bool]] = []
    if "direct" in prod:
        ratio = prod["direct"]["rate_per_s"] / ceiling["direct"]["rate_per_s"]
        got = f"{ratio:.0%} ({prod['direct']['rate_per_s']:,.0f} msg/s)"
        checks.append(("direct messages >= 25% of the echo ceiling", got, ratio >= 0.25))
        for fixed in prod["direct"]["fixed_rates"]:
            if fixed["rate_per_s"] == 2500:
                checks.append(("p99 < 50 ms at 2,500 msg/s", f"{fixed['p99_ms']:.1f} ms",
                               fixed["p99_ms"] < 50))  # fmt: skip
    if "idle" in prod:
        kb = prod["idle"]["kb_per_connection"]
        held = f"{prod['idle']['connections']:,} of {prod['idle']['requested']:,}"
        checks.append((f"{held} connections held, <= 40 KB each",
                       f"{kb:.1f} KB", kb <= 40))  # fmt: skip
    if "fanout" in prod:
        fan = prod["fanout"]["rate_per_s"] / ceiling["fanout"]["rate_per_s"]
        got = f"{fan:.0%} ({prod['fanout']['rate_per_s']:,.0f}/s)"
        checks.append(("fan-out >= 50% of the broadcast ceiling", got, fan >= 0.5))
    if "pending" in prod:
        sync = prod["pending"]["seconds"]
        checks.append((f"{prod['pending']['pending']:,} pending pushed in < 2 s",
                       f"{sync:.2f} s", sync < 2))  # fmt: skip
    for key, label in (("direct", "direct msg/s"), ("fanout", "fan-out deliveries/s")):
        if key in emb and key in prod:
            share = emb[key]["rate_per_s"] / prod[key]["rate_per_s"]
            checks.append((f"embedded {label} within 2x of production", f"{share:.2f}x",
                           share >= 0.5))  # fmt: skip
    if "pending" in emb and "pending" in prod:
        share = emb["pending"]["seconds"] / prod["pending"]["seconds"]
        checks.append(("embedded reconnect within 2x of production", f"{share:.2f}x", share <= 2))
    return checks


def history_targets(prod: Run) -> list[tuple[str, str, bool]]:
    """Issue 12: list p99 < 50 ms, history page p99 < 20 ms, one row per group message."""
    checks: list[tuple[str, str, bool]] = []
    if "p99_ms" in prod.get("conversations", {}):
        p99 = prod["conversations"]["p99_ms"]
        checks.append(("conversation list p99 < 50 ms", f"{p99:.1f} ms", p99 < 50))
    for page in ("newest", "random"):
        if "p99_ms" in prod.get("history", {}).get(page, {}):
            p99 = prod["history"][page]["p99_ms"]
            checks.append((f"history page ({page}) p99 < 20 ms", f"{p99:.1f} ms", p99 < 20))
    if "history_rows_per_message" in prod.get("biggroup", {}):
        per = prod["biggroup"]["history_rows_per_message"]
        checks.append(("history rows per group message: 1", f"{per:g}", per == 1))
    return checks


def profile_lines(run: Run) -> list[str]:
    found = run.get("profile")
    if not found:
        return ["(this run was not profiled: `python -m benchmarks run --profile`)"]
    lines = [f"py-spy, 200 samples/s, while direct messages ran at "
             f"{found['load_rate_per_s']:,.0f} msg/s. Top functions by own time "
             f"(share of the process's samples, idle included):", ""]  # fmt: skip
    for name, top in found.items():
        if not isinstance(top, dict) or not top.get("samples"):
            continue
        lines.append(f"**{name}** ({top['samples']} samples)")
        lines.append("")
        lines += [f"- {share}% `{frame}`" for frame, share in top["own"][:8]]
        lines.append("")
    return lines


def plot(run: Run) -> None:
    """Each figure as a ratio to the ceiling, one bar per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling = figures(run, "ceiling")
    names = [n for n, _, _, _ in ceiling if "p50" not in n and "p99.9" not in n]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(names) + 1.5))
    height = 0.8 / max(1, len([b for b in BACKENDS if b in run]))
    for index, backend in enumerate(b for b in BACKENDS if b in run):
        mine = {n: v for n, _, v, _ in figures(run, backend)}
        ratios = []
        for name, _, value, higher in ceiling:
            if name in names:
                got = mine.get(name)
                # Shown as "share of the ceiling": for times and sizes, ceiling / value.
                if not got or not value:
                    ratios.append(0.0)
                else:
                    ratios.append(got / value if higher else value / got)
        ax.barh([i + index * height for i in range(len(names))], ratios, height, label=backend)
    ax.set_yticks([i + height / 2 for i in range(len(names))], names, fontsize=8)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("share of the bare flask-sock ceiling (1.0 = as good as the bare stack)")
    ax.set_title(f"imchat vs the bare stack, {run['machine']['cores']} cores ({run['started']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def render(path: Path | None = None) -> None:
    """Write docs/benchmarks.md and docs/benchmarks.png from one results file."""
    path = path or newest_full_run()
    run: Run = json.loads(path.read_text())
    plot(run)
    notes = ROOT / "benchmarks" / "NOTES.md"
    machine = run["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks report` from "
        f"`{path.relative_to(ROOT)}`; do not edit by hand.",
        "",
        f"- Reproduce: `make bench` (= `{run['command']}` then `python -m benchmarks report`)",
        f"- Commit {run['commit']}, {run['started']}, the whole run took {run['seconds']:.0f} s",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['os']}, Python {machine['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])} "
        "(other test suites share this machine)",
        f"- Parameters: `{json.dumps(run['params'])}`",
        "",
        "## Results",
        "",
        "Every figure is measured in the same run on the ceiling (a bare flask-sock echo,",
        "`benchmarks/echo_app.py`, under the same gunicorn gevent command line, one worker)",
        "and on imchat; the ratio is imchat / ceiling (for rates higher is better, for",
        "latencies, memory and times lower is better).",
        "",
        *table(run),
        "",
        "![imchat as a share of the ceiling](benchmarks.png)",
        "",
        "## Targets (production path)",
        "",
        *targets(run),
        "",
        "## Where the time goes",
        "",
        *profile_lines(run),
    ]
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    DOC.write_text("\n".join(lines) + "\n")
    print(DOC, PLOT)
