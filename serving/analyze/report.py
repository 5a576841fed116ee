"""What `dnnzoo analyze` shows: the table of measured plans and the chart (throughput against p99).

The chart answers "which plan, and what does it cost in latency" at a glance: one point per plan,
throughput up, p99 latency right, the latency budget as a dashed line with the plans beyond it
greyed out, the chosen plan as a large red star named in the legend. Each point carries its
row number in the table and its name; past ALL_NAMED plans only the plans on the frontier (none
faster at a lower p99) and the server's default plan carry their names, so that labels do not pile up.
"""

from __future__ import annotations

from pathlib import Path

from serving.analyze.grid import Plan
from serving.commands import common

ALL_NAMED = 6  # up to this many plans, every point carries its name


def ranked(results: list[tuple[Plan, dict]]) -> list[tuple[Plan, dict]]:
    """Fastest first: the table's order, and the numbers on the chart."""
    return sorted(results, key=lambda pair: -pair[1]["items_s"])


def table(results: list[tuple[Plan, dict]], chosen: Plan | None, budget_ms: float | None) -> str:
    """One row per plan, fastest first; the chosen plan marked."""
    header = ["#", "plan", "instances", "threads", "queue delay us", "preferred", "items/s", "p50 ms", "p99 ms",
              "p99 <= budget", ""]
    rows = []
    for number, (plan, row) in enumerate(ranked(results), 1):
        within = "-" if budget_ms is None else ("yes" if row["p99_ms"] <= budget_ms else "no")
        delay = "no batching" if plan.delay_us is None else str(plan.delay_us)
        threads = f"{plan.threads} alone, {plan.side_by_side} side by side" if plan.adaptive else plan.threads
        rows.append([number, plan.label, plan.instances, threads, delay, ",".join(map(str, plan.preferred)) or "-",
                     f"{row['items_s']:,.0f}", f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}", within,
                     "<- chosen" if plan == chosen else ""])
    return common.table(rows, header)


def _unpile(labels, fig, ax, points, star) -> None:
    """Keep the first label (the chosen plan's) where it is; move each other label, the named ones
    first, to the first spot beside its point where it covers no label already placed, no point and
    not the star: points of near-equal plans otherwise print their labels over each other."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()

    def around(xy, points_radius: float):
        x, y = ax.transData.transform(xy)
        reach = points_radius * fig.dpi / 72
        return Bbox.from_extents(x - reach, y - reach, x + reach, y + reach)

    placed = [around(xy, 4) for xy in points] + ([around(star, 12)] if star is not None else [])
    spots = [(6, 4), (6, -12), (-6, 4), (-6, -12), (6, 14), (6, -22), (-6, 14), (-6, -22)]
    for number, label in enumerate(labels):
        for spot in [] if number == 0 and star is not None else [label.xyann, *spots]:
            label.xyann = spot
            label.set_horizontalalignment("left" if spot[0] >= 0 else "right")
            if not any(label.get_window_extent(renderer).overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))


def frontier(results: list[tuple[Plan, dict]]) -> list[tuple[Plan, dict]]:
    """The plans no other plan beats on both throughput and p99, by rising p99."""
    front: list[tuple[Plan, dict]] = []
    for plan, row in sorted(results, key=lambda pair: (pair[1]["p99_ms"], -pair[1]["items_s"])):
        if not front or row["items_s"] > front[-1][1]["items_s"]:
            front.append((plan, row))
    return front


def chart(results: list[tuple[Plan, dict]], chosen: Plan | None, budget_ms: float | None, title: str,
          subtitle: str, path: Path) -> None:
    """Write the PNG chart to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    inside = [(p, r) for p, r in results if budget_ms is None or r["p99_ms"] <= budget_ms]
    outside = [(p, r) for p, r in results if budget_ms is not None and r["p99_ms"] > budget_ms]
    if inside:
        ax.scatter([r["p99_ms"] for _, r in inside], [r["items_s"] for _, r in inside], s=45, color="tab:blue",
                   label="plan" if budget_ms is None else "plan within the p99 budget", zorder=3)
    if outside:
        ax.scatter([r["p99_ms"] for _, r in outside], [r["items_s"] for _, r in outside], s=45, color="0.65",
                   marker="X", label="plan over the p99 budget", zorder=3)
    front = frontier(results)
    if len(front) > 1:
        ax.plot([r["p99_ms"] for _, r in front], [r["items_s"] for _, r in front], color="tab:blue", alpha=0.5,
                linewidth=1, drawstyle="steps-post", zorder=2, label="frontier: best throughput for its p99")
    default = {plan for plan, _ in results if plan.adaptive and not plan.delay_us and not plan.preferred}
    named = {plan for plan, _ in front} | {chosen} | default  # the default plan: what the rest are against
    if len(results) <= ALL_NAMED:
        named = {plan for plan, _ in results}
    labels = []
    for number, (plan, row) in enumerate(ranked(results), 1):
        text = f"{number} {plan.label}" if plan in named else str(number)
        mine = plan == chosen
        label = ax.annotate(text, (row["p99_ms"], row["items_s"]), textcoords="offset points",
                            xytext=(12, 10) if mine else (6, -12 if plan in named else 4), fontsize=8 if not mine else 9,
                            color="tab:red" if mine else "0.2", fontweight="bold" if mine else "normal", zorder=5,
                            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.6})
        labels.append((0 if mine else 1 if plan in named else 2, label))
    if chosen is not None:
        row = dict(results)[chosen]
        ax.scatter([row["p99_ms"]], [row["items_s"]], s=380, marker="*", color="tab:red", edgecolor="black",
                   zorder=4, label=f"chosen: {chosen.label} ({row['items_s']:,.0f} items/s, p99 {row['p99_ms']:.2f} ms)")
    elif budget_ms is not None:
        ax.text(0.5, 0.5, f"no plan kept p99 within {budget_ms:g} ms", transform=ax.transAxes, ha="center",
                va="center", fontsize=13, color="tab:red")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="tab:red", linestyle="--", linewidth=1.2, label=f"p99 budget {budget_ms:g} ms")
    p99 = [r["p99_ms"] for _, r in results] + ([budget_ms] if budget_ms is not None else [])
    if max(p99) > 8 * min(p99):  # one slow plan would squeeze the rest against the axis
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("p99 latency (ms, log scale)  - lower is better")
    else:
        ax.set_xlim(left=0, right=max(p99) * 1.2)
        ax.set_xlabel("p99 latency (ms)  - lower is better")
    ax.set_ylabel("throughput (items/s)  - higher is better")
    ax.set_ylim(bottom=0, top=max(r["items_s"] for _, r in results) * 1.15)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    ax.legend(loc="lower right", fontsize=9)
    fig.text(0.01, 0.01, "numbers: the table's rows, fastest first; names: instances x intra-op threads "
             "(/ side by side: the adaptive default), +queue delay, preferred size",
             fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    star = None if chosen is None else (dict(results)[chosen]["p99_ms"], dict(results)[chosen]["items_s"])
    points = [(row["p99_ms"], row["items_s"]) for _, row in results]
    _unpile([label for _, label in sorted(labels, key=lambda pair: pair[0])], fig, ax, points, star)
    fig.savefig(path)
    plt.close(fig)
