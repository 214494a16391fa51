"""The report's figures, drawn with matplotlib from the history and results alone (PNG bytes).

Every function returns ``None`` when there is nothing to draw, so a report of a partial run still renders.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

from implementations.backends import REGISTRY, base_name

matplotlib.use("Agg")  # headless: reports are built on CI machines without a display
# Titles and labels are scenario and backend names, which are data: "$\\foo$" is text, not mathtext.
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from harness.analysis.metrics import METRICS  # noqa: E402
from harness.analysis.runindex import RunIndex  # noqa: E402
from harness.plan.netfaults import windows as net_windows  # noqa: E402

COLORS = {name: r.color for name, r in REGISTRY.items()}
OUTCOME_COLORS = {"success": "#2ca02c", "retry": "#ff7f0e", "failure": "#d62728", None: "#9467bd"}


def _color(backend: str) -> str:
    return COLORS.get(base_name(backend), "#8c564b")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def lateness_plot(scenario: str, lateness: Mapping[str, Sequence[float]], *, tolerance_s: float) -> bytes | None:
    """Distribution of retry lateness per backend (ms): box plot with every retry as a point."""
    data = {b: [v * 1e3 for v in vs] for b, vs in lateness.items() if vs}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.7 + 0.6 * len(data)))
    names = list(data)
    ax.boxplot([data[b] for b in names], orientation="horizontal", showfliers=False, widths=0.5)
    for i, b in enumerate(names, start=1):
        values = data[b]
        # Deterministic vertical spread so overlapping points stay visible without random jitter.
        offsets = [((k * 37) % 17 - 8) / 40 for k in range(len(values))]
        # Arrays, not lists: matplotlib converts a list point by point (a second for 125,000 retries).
        ax.scatter(np.asarray(values, dtype=float), np.asarray([i + o for o in offsets], dtype=float), s=8,
                   alpha=0.5, color=_color(b))
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvspan(min(min(v) for v in data.values()) - 1, -tolerance_s * 1e3, color="#d62728", alpha=0.08,
               label="early (violation)")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("retry lateness (ms, symlog): actual gap − configured delay")
    ax.set_title(f"{scenario}: retry lateness")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


NETWORK_COLORS = {"partition": "#1f3f7f", "drop": "#111111"}  # latency windows: grey


def timeline_plot(scenario: str, runs: Mapping[str, RunIndex], *, sample: int = 6) -> bytes | None:
    """Attempts of the first ``sample`` jobs per backend on one time axis, outage windows shaded."""
    rows: list[tuple[str, list[tuple[float, float, str | None]]]] = []
    windows: list[tuple[float, float]] = []
    network: set[tuple[str, float, float]] = set()  # simulated hosts: partitions, latency, drops (netfaults.py)
    for backend, idx in runs.items():
        t0 = idx.first_enqueue_ns
        if t0 is None:
            continue
        network.update((label, round(a, 1), round(b, 1)) for label, a, b in net_windows(idx.network, t0))
        for rule in (idx.header or {}).get("faults") or ():
            if rule.get("kind") == "outage":
                windows.append((float(rule["start"]), float(rule["start"]) + float(rule["duration"])))
        # The jobs with the most attempts show the retry behaviour; ties go to the earliest job.
        busiest = sorted(idx.jobs, key=lambda j: (-len(idx.jobs[j].attempts_seen()), j))[:sample]
        for job_id in sorted(busiest):
            jv = idx.jobs[job_id]
            bars = []
            for n in sorted(jv.ends):
                end = jv.ends[n][0]
                start = jv.start_ns(n)
                if start is None or end.finished_ns is None:
                    continue
                bars.append(((start - t0) / 1e9, max((end.finished_ns - start) / 1e9, 0.0), end.outcome))
            rows.append((f"{backend} {job_id.rsplit('-', 1)[-1]}", bars))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.22 * len(rows)))
    # A bar as wide as the attempt would be invisible for millisecond tasks: draw at least 0.5% of the axis.
    span = max((s + w for _, bars in rows for s, w, _ in bars), default=1.0) or 1.0
    for y, (_, bars) in enumerate(rows):
        ax.broken_barh([(s, max(w, span / 200)) for s, w, _ in bars], (y - 0.35, 0.7),
                       facecolors=[OUTCOME_COLORS.get(o, "#9467bd") for _, _, o in bars])
        if bars:
            ax.plot([bars[0][0], bars[-1][0]], [y, y], color="#cccccc", linewidth=0.8, zorder=0)
    for w_start, w_end in set(windows):
        ax.axvspan(w_start, w_end, color="#d62728", alpha=0.12)
    for label, n_start, n_end in sorted(network, key=lambda w: w[1]):
        color = NETWORK_COLORS.get(label.split()[0], "#7f7f7f")
        ax.axvspan(n_start, max(n_end, n_start + span / 300), color=color, alpha=0.18, hatch="//")
        ax.annotate(label, (n_start, -0.6), fontsize=6, color=color, annotation_clip=False, va="bottom")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first enqueue")
    ax.set_title(f"{scenario}: attempts of sampled jobs" + (" (shaded: injected outage)" if windows else "")
                 + (" (hatched: network faults)" if network else ""))
    ax.legend(handles=[Patch(color=c, label=o) for o, c in OUTCOME_COLORS.items() if o],
              loc="lower right", fontsize=7)
    return _png(fig)


def throughput_plot(points: Mapping[str, Sequence[tuple[float, float]]]) -> bytes | None:
    """Jobs/s against the injected per-attempt failure rate, one line per backend."""
    usable = {b: sorted(p) for b, p in points.items() if p}
    if not usable:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for backend, pts in usable.items():
        ax.plot([p * 100 for p, _ in pts], [v for _, v in pts], marker="o", label=backend, color=_color(backend))
    ax.set_xlabel("injected failure rate per attempt (%)")
    ax.set_ylabel(METRICS["throughput_jobs_s"].unit)
    ax.set_title("throughput by failure rate")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _png(fig)


def scaling_plot(name: str, size: str, curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]]
                 ) -> bytes | None:
    """One panel per metric (``curves``: metric → backend → (size, value) points), one line per backend."""
    panels = {m: pts for m, pts in curves.items() if any(pts.values())}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (metric, by_backend) in zip(axes[0], panels.items(), strict=True):
        for backend, pts in by_backend.items():
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=backend, color=_color(backend))
        ax.set_xlabel(size)
        ax.set_xscale("log", base=10 if size == "jobs" else 2)  # 1k/10k/100k jobs; 1/2/4/8 workers
        ax.set_ylabel(METRICS[metric].unit or metric)
        ax.set_title(metric.replace("_", " "), fontsize=9)
        if metric.startswith("throughput") or metric.startswith("wall_throughput"):
            ax.set_yscale("log")  # the in-process reference runs 10-100x faster than the queues
        else:
            ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{name}: by {size}", fontsize=10)
    return _png(fig)


def completeness_plot(rows: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Per scenario × backend: failure records expected vs found, and field completeness."""
    cells = [(s, b, v) for s, by_b in rows.items() for b, v in by_b.items()
             if (v.get("failure_records") or 0) or (v.get("missing_records") or 0)]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * len(cells)))
    labels = [f"{s} · {b}" for s, b, _ in cells]
    found = [v.get("failure_records") or 0 for _, _, v in cells]
    missing = [v.get("missing_records") or 0 for _, _, v in cells]
    dup = [v.get("duplicate_records") or 0 for _, _, v in cells]
    ys = range(len(cells))
    ax.barh(ys, found, color="#2ca02c", label="records found")
    ax.barh(ys, missing, left=found, color="#d62728", label="missing")
    ax.barh(ys, dup, left=[f + m for f, m in zip(found, missing, strict=True)], color="#9467bd", label="duplicate")
    for y, (_, _, v) in zip(ys, cells, strict=True):
        pct = v.get("failure_log_completeness")
        if pct is not None:
            ax.text(0, y, f" {pct:.0f}% fields", va="center", fontsize=7, color="white")
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("failure records")
    ax.set_title("failure-log completeness")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)
