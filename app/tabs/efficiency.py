"""Efficiency tab (paper Sec. 4.3.1, Table 1): NB against APNB as the feature map grows.

NB's attention costs N^2 C^ (every position attends to every position), APNB's N S C^ with a fixed
S = 110 anchors, so NB grows quadratically and APNB linearly in N = H x W. A button measures both
live on this machine at small sizes with ann.analysis.efficiency (GMACs counted, time, peak
memory); the recorded benchmark rows (JSON written by `python -m ann.bench ... --json`) are shown
beside them.
"""

import json
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from scipy.optimize import nnls

from ann.analysis import efficiency as bench
from ann.images import parse_size
from app.errors import UserError
from app.session import MODEL_QUEUE, returns_freed_memory
from app.tab import Components, Context, Tab

DEFAULT_SIZES = "16x16, 32x16, 32x32, 48x32, 64x32"  # width x height of the feature map
MAX_POSITIONS = 96 * 96  # NB's N x N attention at larger N takes seconds and GBs on a CPU
RECORDED = ("docs/benchmarks*.json", "docs/benchmarks/*.json", "docs/bench*/*.json")
ROOT = Path(__file__).resolve().parents[2]
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")  # Okabe-Ito
COLOURS = {"nb": PALETTE[0], "apnb": PALETTE[1]}
COLUMNS = ["block", "width", "height", "N", "gmacs", "time_ms", "peak_mem_mb", "device_name", "dtype"]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'16x16, 32x16' -> [(16, 16), (32, 16)] as (width, height)."""
    sizes = []
    for part in str(text).replace(";", ",").split(","):
        if part.strip():
            try:
                sizes.append(parse_size(part.strip()))
            except ValueError as error:
                raise UserError(str(error)) from None
    if not sizes:
        raise UserError("give at least one feature-map size, e.g. 32x16")
    too_big = [f"{w}x{h}" for w, h in sizes if w * h > MAX_POSITIONS]
    if too_big:
        raise UserError(f"sizes {', '.join(too_big)} exceed {MAX_POSITIONS} positions, too slow for NB here")
    return sorted(sizes, key=lambda s: s[0] * s[1])


def fit_curve(N: np.ndarray, values: np.ndarray, quadratic: bool) -> np.ndarray:
    """Non-negative least-squares coefficients of a N^2 + b N + c (NB) or b N + c (APNB, S fixed);
    non-negative so one noisy timing on a shared CPU cannot bend the curve down."""
    basis = [N**2, N, np.ones_like(N)] if quadratic else [N, np.ones_like(N)]
    A = np.stack(basis, 1)
    scale = np.abs(A).max(0)  # columns of similar size for the solver
    coefficients, _ = nnls(A / scale, values)
    return coefficients / scale


def curve(N: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    powers = np.stack([N ** (len(coefficients) - 1 - i) for i in range(len(coefficients))], 1)
    return powers @ coefficients


def chart(
    rows: list[dict], key: str, title: str, unit: str, exact: dict | None = None, fit: bool = False
) -> go.Figure:
    """Measured points per series; dashed, the exact count (exact[block](N)) or a least-squares
    fit of the N^2 (NB) or N S (APNB) shape through the points."""
    figure = go.Figure()
    for index, series in enumerate(dict.fromkeys(r["series"] for r in rows)):
        chosen = [r for r in rows if r["series"] == series and r.get(key) is not None]
        if not chosen:
            continue
        kind = chosen[0]["block"]
        N, values = (
            np.array(v, dtype=float) for v in zip(*sorted((r["N"], r[key]) for r in chosen), strict=True)
        )
        colour = COLOURS.get(series, PALETTE[index % len(PALETTE)])
        figure.add_scatter(x=N, y=values, mode="markers", name=f"{series} measured", marker_color=colour)
        dense = np.linspace(0, N.max() * 1.05, 60)
        quadratic = kind in ("nb", "nb_sdpa", "fnb")
        if exact and kind in exact:
            ys = exact[kind](dense)
        elif fit and len(N) >= (3 if quadratic else 2):
            ys = curve(dense, fit_curve(N, values, quadratic))
        else:
            continue
        label = "N² C^ + N C C^" if quadratic else "N S C^ + N C C^"
        line = dict(dash="dash", color=colour)
        figure.add_scatter(x=dense, y=ys, mode="lines", line=line, name=f"{series} ~ {label}")
    figure.update_layout(  # legend under the plot: beside it, it took half of a third-width chart
        title=title, xaxis_title="N = H x W (feature positions)", yaxis_title=unit, height=400,
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
        margin={"l": 50, "r": 10, "t": 50, "b": 10},
    )  # fmt: skip
    return figure


@returns_freed_memory  # NB's N x N attention maps are the largest buffers the app allocates
def measure_blocks(sizes: str, channels: int, key: int, repeats: int, progress=gr.Progress()):  # noqa: B008
    """NB and APNB (attention part, as Table 1) at each size: rows and three charts."""
    grid = parse_sizes(sizes)
    channels, key, repeats = int(channels), int(key), int(repeats)
    if channels < 1 or key < 1 or not 1 <= repeats <= 20:
        raise UserError(f"channels ({channels}) and C^ ({key}) must be positive, repeats 1..20 ({repeats})")
    rows = []
    jobs = [(w, h, kind) for w, h in grid for kind in ("nb", "apnb")]
    for w, h, kind in progress.tqdm(jobs, desc="measuring NB and APNB"):
        row = bench.bench_block(kind, w, h, "cpu", "fp32", repeats, "attention", channels, key)
        rows.append(row | {"N": w * h, "series": kind})
    # GMACs are exact counts: draw them for every N on a dense grid of the same aspect ratio
    width, height = grid[-1]
    exact = {
        kind: lambda N, kind=kind: np.array(
            [bench.block_gmacs(kind, *grid_size(n, width, height), channels, key) for n in N]
        )
        for kind in ("nb", "apnb")
    }
    figures = (
        chart(rows, "gmacs", f"GMACs (C={channels}, C^={key}, S=110)", "GMACs", exact),
        chart(rows, "time_ms", "time on this CPU (median, fp32)", "ms", fit=True),
        chart(rows, "peak_mem_mb", "peak memory (torch CPU allocator)", "MB"),
    )
    table = [[row.get(c) for c in COLUMNS] for row in rows]
    info = f"measured on {rows[0]['device_name']}, torch {rows[0]['torch']}, {rows[0]['threads']} thread(s)"
    return *figures, table, info


def grid_size(N: float, width: int, height: int) -> tuple[int, int]:
    """(height, width) of about N positions with the aspect ratio width:height (at least 1x1)."""
    h = max(1, round((N * height / width) ** 0.5))
    return h, max(1, round(N / h))


def recorded_rows(root: Path = ROOT) -> list[dict]:
    """Block rows of the benchmark JSON files recorded in docs/ (ann.bench --json)."""
    rows = []
    paths = sorted({path for pattern in RECORDED for path in root.glob(pattern)})
    for path in paths:
        try:
            found = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not a benchmark file
        for row in found if isinstance(found, list) else []:
            if isinstance(row, dict) and {"block", "width", "height"} <= set(row):
                rows.append(row | {"N": row["width"] * row["height"], "source": path.name})
    return rows


def recorded(root: Path = ROOT):
    """The recorded table and its time chart, or a note saying where rows are looked for."""
    rows = recorded_rows(root)
    if not rows:
        looked = ", ".join(f"`{pattern}`" for pattern in RECORDED)  # code spans: Markdown keeps the *
        note = f"No recorded benchmark JSON found (looked for {looked}); see docs/benchmarks.md."
        return None, [], note
    for row in rows:  # one series per block, device and dtype
        row["series"] = (
            f"{row['block']} ({row.get('device_name', row.get('device', '?'))}, {row.get('dtype', '')})"
        )
    figure = chart(rows, "time_ms", "recorded time", "ms", fit=True)
    figure.update_xaxes(type="log")
    figure.update_yaxes(type="log")
    table = [[row.get(c) for c in COLUMNS] for row in rows]
    return figure, table, f"{len(rows)} recorded rows from {', '.join(sorted({r['source'] for r in rows}))}"


def build(ctx: Context) -> Components:
    """The tab's UI and its listeners (named endpoints); it reads no session."""
    gr.Markdown(
        "**NB vs APNB as the input grows.** NB compares every position with every other one "
        "(cost ∝ N²), APNB with S = 110 pooled anchors (cost ∝ N·S). The button measures the "
        "attention part of both blocks on this machine's CPU at small feature maps (defaults: "
        "C = 512, C^ = 128; the paper's Table 1 uses 2048 and 256 at 96x96 and 256x128). "
        "Dashed lines: exact GMAC counts, and least-squares fits of the N² and N·S shapes to the times."
    )
    with gr.Row():
        sizes = gr.Textbox(DEFAULT_SIZES, label="feature-map sizes, width x height")
        channels = gr.Number(512, label="C (input channels)", precision=0)
        key = gr.Number(128, label="C^ (key/value channels)", precision=0)
        repeats = gr.Slider(1, 10, value=3, step=1, label="timed repeats (median)")
    run = gr.Button("Measure NB and APNB", variant="primary")
    info = gr.Markdown()
    with gr.Row():
        gmacs = gr.Plot(label="GMACs")
        time_ms = gr.Plot(label="time")
        memory = gr.Plot(label="memory")
    table = gr.Dataframe(headers=COLUMNS, label="measured here", interactive=False)
    run.click(
        measure_blocks,
        [sizes, channels, key, repeats],
        [gmacs, time_ms, memory, table, info],
        api_name="efficiency",
        **MODEL_QUEUE,  # timings are meaningless while another model call shares the CPU
    )
    gr.Markdown("### Recorded benchmarks")
    load = gr.Button("Load recorded benchmarks")
    recorded_info = gr.Markdown()
    recorded_plot = gr.Plot(label="recorded time vs N")
    recorded_table = gr.Dataframe(headers=COLUMNS, label="recorded rows", interactive=False)
    load.click(recorded, None, [recorded_plot, recorded_table, recorded_info], api_name="recorded_benchmarks")
    return {"run": run, "load": load}


TAB = Tab("Efficiency", "efficiency", build)
