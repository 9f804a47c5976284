"""Shared parts of the benchmark suite: result rows, sizes, timing, the machine, the table.

Every benchmark module (``benchmarks/<name>.py``, registered in :data:`benchmarks.run.BENCHMARKS`)
implements one function::

    def run(size: str, out: pathlib.Path) -> list[Row]: ...

``size`` is one of :data:`SIZES`; ``out`` is the results folder, where the module writes its
plots (PNG) and names them in its rows (``Row.plot``). The runner prints the rows of every
module as one table and writes ``results.json`` and ``table.md`` next to the plots. A module
raises on a broken run (a wrong final text, a lost edit): the runner reports it and goes on.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

SIZES = ("smoke", "medium", "full")
"""``smoke``: seconds per benchmark, for CI (it keeps the code working, its figures mean
little); ``medium``: a minute or two, a development check; ``full``: the issue's sizes."""


def pick(size: str, *, smoke: Any, medium: Any, full: Any) -> Any:
    """The parameter for ``size`` (one of :data:`SIZES`); raises ``ValueError`` otherwise."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return {"smoke": smoke, "medium": medium, "full": full}[size]


@dataclass(frozen=True)
class Row:
    """One line of the results table: our figure, side by side with one baseline.

    ``ours`` and ``baseline_value`` are in ``unit`` (``edits/s``, ``ms``, ``B/edit``, ...);
    ``ratio`` is ``ours / baseline_value``. ``target`` is the goal as text (``"≥ 0.5x"``,
    ``"≤ 250 ms"``); ``met`` says whether it is met (``None``: no target for this row).
    ``plot``: file name of a PNG in the results folder this row belongs to (``""``: none).
    ``note``: what was run (sizes, repeats, prefixes of a capped baseline).
    """

    benchmark: str
    measure: str
    unit: str
    ours: float | None
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    plot: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline_value:
            return None
        return self.ours / self.baseline_value

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


# --- timing --------------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (raises ``ValueError`` when empty)."""
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank (raises when empty)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def timed_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` (one list entry per call)."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return runs


def load_average() -> float:
    """The 1-minute load average (the machine is shared: print it with every figure)."""
    return os.getloadavg()[0]


# --- the machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, CPU model, RAM, load, library versions."""
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(_ram_gib(), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("duckdb", "loro", "pycrdt", "pycrdt-store", "sqlrooms_nb", "matplotlib")
        },
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the table's header."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    load = " ".join(f"{x:.2f}" for x in info["load_average"])
    return (
        f"{info['nproc']} CPUs ({info['cpu']}), {info['ram_gib']} GiB RAM, load average {load}; "
        f"Python {info['python']}, {versions}"
    )


# --- files ---------------------------------------------------------------------------------------


def folder_size(path: Path) -> tuple[int, int]:
    """``(bytes, files)`` of every regular file under ``path`` (0, 0 if it does not exist)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # a WAL file removed meanwhile
                continue
            files += 1
    return total, files


# --- the table -----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    """A figure with its unit, short: ``123.4k edits/s``, ``12.3 ms``, ``1.12 B/edit``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "edits/s":
        if value >= 1e5:
            return f"{value / 1e3:.0f}k/s"
        if value >= 1e3:
            return f"{value / 1e3:.1f}k/s"
        return f"{value:.0f}/s"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if unit == "B/edit":
        return f"{value:.2f} B/edit" if value < 100 else f"{value:.0f} B/edit"
    if unit == "files/1k edits":
        return f"{value:.2f} files/1k"
    if value == int(value) and abs(value) < 1e9:  # a count
        return f"{int(value):,} {unit}"
    return f"{value:.3g} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.2f}x"


def _met(row: Row) -> str:
    return {True: "yes", False: "NO", None: ""}[row.met]


COLUMNS = ("measure", "ours", "baseline", "ratio", "target", "met?")


def table_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """Rows as strings, in :data:`COLUMNS` order (ratio = ours / baseline)."""
    out: list[tuple[str, ...]] = []
    for row in rows:
        base = f"{row.baseline} {fmt(row.baseline_value, row.unit)}" if row.baseline else ""
        out.append(
            (
                row.measure,
                fmt(row.ours, row.unit),
                base,
                fmt_ratio(row.ratio),
                row.target,
                _met(row),
            )
        )
    return out


def text_table(rows: Sequence[Row]) -> str:
    """The table as aligned plain text."""
    cells = [COLUMNS, *table_cells(rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    """The table as GitHub markdown."""
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table_cells(rows)]
    return "\n".join([head, rule, *body])


# --- plots ---------------------------------------------------------------------------------------


def save_plot(
    out: Path,
    name: str,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    logx: bool = False,
    logy: bool = False,
    target: float | None = None,
) -> str:
    """Draw ``series`` (label -> (xs, ys)) as lines with markers into ``out/name`` (PNG);
    ``target`` draws a dashed horizontal goal line. Returns ``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=label)
    if target is not None:
        ax.axhline(target, linestyle="--", color="grey", label="target")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name)
    plt.close(fig)
    return name


def save_bars(
    out: Path,
    name: str,
    title: str,
    ylabel: str,
    bars: dict[str, float],
    *,
    logy: bool = False,
    target: float | None = None,
) -> str:
    """Draw ``bars`` (label -> value) as a bar chart into ``out/name`` (PNG), each bar labelled
    with its value; ``target`` draws a dashed goal line. Returns ``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.0), dpi=100)
    labels = list(bars)
    values = [bars[k] for k in labels]
    drawn = ax.bar(range(len(labels)), values, color="tab:blue")
    ax.bar_label(drawn, labels=[f"{v:,.3g}" for v in values], fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=8)
    if target is not None:
        ax.axhline(target, linestyle="--", color="grey", label="target")
        ax.legend()
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name)
    plt.close(fig)
    return name
