"""ann.bench: MAC counts against the paper and the closed forms, ann.timing's measurement helpers, the CLI.

Nothing here asserts a time: the figures live in docs/benchmarks.md.
"""

import argparse
import json

import pytest
import torch

from ann.analysis.efficiency import (
    BLOCKS,
    bench_block,
    block_gmacs,
    block_inputs,
    count_gmacs,
    make_block,
    nonzero_,
)
from ann.cli.args import size as parse_size
from ann.cli.bench import main
from ann.models.sampling import SamplingConfig
from ann.timing import cpu_peak_mb, measure


def closed_form(
    kind: str, H: int, W: int, C: int, K: int, S: int | None, scope: str = "attention", V: int | None = None
) -> float:
    """MACs (1e9) of Eq. 1-10 + W_o: projections, the two matmuls (Eq. 9-10), and the fusing conv.
    K = key channels, V = value channels (K unless given)."""
    N = H * W
    S = N if S is None else S
    V = K if V is None else V
    if kind in ("nb", "nb_sdpa", "apnb"):
        projections = N * C * K + N * C * V + N * V * C  # shared query/key conv, value conv, W_o
    else:
        projections = N * (C * K + C // 2 * K + C // 2 * V) + N * V * C  # query on high, key/value on low
    fuse = N * 2 * C * C if scope == "block" else 0
    return (projections + N * S * K + N * S * V + fuse) / 1e9  # Eq. 9 (query x key), Eq. 10 (x value)


@pytest.mark.parametrize(("width", "height", "paper"), [(96, 96, 58.0), (256, 128, 601.3)])
def test_nb_gmacs_match_table1(width, height, paper):
    assert abs(block_gmacs("nb", height, width) - paper) < 0.5
    assert abs(block_gmacs("nb_sdpa", height, width) - paper) < 0.5


@pytest.mark.parametrize("kind", ["apnb", "afnb", "fnb"])
@pytest.mark.parametrize(("width", "height"), [(96, 96), (256, 128), (33, 17)])
def test_counts_follow_the_closed_form(kind, width, height):
    S = None if kind == "fnb" else 110
    expected = closed_form(kind, height, width, 2048, 256, S)
    assert block_gmacs(kind, height, width) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "sampling", [SamplingConfig("pyramid_max", (1, 2, 3, 6)), SamplingConfig("random", (15,))]
)
def test_counts_follow_the_sampling(sampling):
    expected = closed_form("apnb", 64, 48, 512, 128, sampling.num_anchors, "block")
    assert block_gmacs("apnb", 64, 48, 512, 128, sampling, scope="block") == pytest.approx(expected)


def test_apnb_table1_counts():
    # ANN-REFERENCE.md: recounting gives about 15.0 (96x96) and 53.4 (256x128)
    assert block_gmacs("apnb", 96, 96) == pytest.approx(15.0, abs=0.05)
    assert block_gmacs("apnb", 128, 256) == pytest.approx(53.4, abs=0.05)


@pytest.mark.parametrize("kind", BLOCKS)
def test_meta_count_equals_count_on_real_tensors(kind):
    module = make_block(kind, channels=16, key=8)
    real = count_gmacs(module, *block_inputs(module, 7, 9))
    assert real == pytest.approx(block_gmacs(kind, 7, 9, channels=16, key=8))
    assert real == pytest.approx(
        closed_form(kind, 7, 9, 16, 8, None if kind in ("nb", "nb_sdpa", "fnb") else 110)
    )


def test_nb_sdpa_computes_nb():
    module = nonzero_(make_block("nb", channels=16, key=8))
    x = block_inputs(module, 5, 6)
    with torch.no_grad():
        naive = module(*x)
        module.block.attention.use_sdpa = True
        fused = module(*x)
    assert naive.abs().sum() > 0  # W_o no longer zero: the attention path is exercised
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-5)


def test_cpu_peak_sees_allocations():
    def fn():
        a = torch.ones(1_000_000)  # 3.81 MiB
        b = a + 1  # both held: 7.63 MiB
        del a
        return b * 2  # a freed first: still 7.63 MiB at most

    assert cpu_peak_mb(fn) == pytest.approx(2 * 4e6 / 2**20, rel=0.02)
    time_ms, peak_mb = measure(fn, "cpu", repeats=2)
    assert time_ms > 0 and peak_mb == pytest.approx(2 * 4e6 / 2**20, rel=0.02)


def test_only_kinetos_progress_lines_are_dropped(capfd):
    import os

    from ann.timing import without_kineto_chatter

    stamp = b"2026-12-05 16:18:55 31114:31114"
    with without_kineto_chatter():
        os.write(2, b"USDT:" + stamp + b" SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"ERROR:" + stamp + b" CuptiActivityProfiler.cpp:1] a real error\n")
        os.write(2, b"STAGE:" + stamp + b" SyncActivityProfilerHandler.cpp:51] Completed Stage: Warm Up\n")
        os.write(2, b"a warning\n")
    error = "ERROR:" + stamp.decode() + " CuptiActivityProfiler.cpp:1] a real error"
    assert capfd.readouterr().err.splitlines() == [error, "a warning"]


def test_parse_size():
    assert parse_size("256x128") == (256, 128)
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
        parse_size("256")


def test_block_cli_writes_rows(tmp_path, capfd):
    out = tmp_path / "block.json"
    main(["block", "--size", "8x6", "--channels", "16", "--key", "8", "--repeats", "1", "--json", str(out)])
    rows = json.loads(out.read_text())
    assert [r["block"] for r in rows] == list(BLOCKS)
    printed = capfd.readouterr()  # the table alone: no profiler lines (kineto writes to fd 2) between rows
    assert printed.err == "" and "profiler_st" not in printed.out
    assert len(printed.out.splitlines()) == 2 * len(BLOCKS) + 3  # a line per row, then the table
    keys = {"block", "height", "width", "device", "dtype", "gmacs", "peak_mem_mb", "time_ms"}
    for row in rows:
        assert keys <= set(row) and (row["height"], row["width"]) == (6, 8)
        assert row["gmacs"] == pytest.approx(block_gmacs(row["block"], 6, 8, 16, 8), abs=1e-3)


def test_network_cli_counts_parameters(tmp_path):
    out = tmp_path / "network.json"
    main(["network", "--backbone", "resnet18", "--variant", "apnb", "--size", "64x32", "--repeats", "1",
          "--json", str(out)])  # fmt: skip
    (row,) = json.loads(out.read_text())
    assert (row["variant"], row["backbone"], row["width"], row["height"]) == ("apnb", "resnet18", 64, 32)
    # aux head: 3x3 conv 256->512 + BN + 1x1 conv 512->19
    aux = (256 * 9 * 512 + 512) + 2 * 512 + (512 * 19 + 19)
    assert row["params_m"] - row["params_without_aux_m"] == pytest.approx(aux / 1e6, abs=1e-3)
    assert row["time_ms"] > 0
    # the whole network is counted (backbone, fusion, context, classifier), as on real tensors
    from ann.models import build_network, variant

    model = build_network(variant("apnb", backbone="resnet18", pretrained=False)).eval()
    x = torch.randn(1, 3, 32, 64)
    assert row["gmacs"] == pytest.approx(count_gmacs(model, x), abs=0.05)
    assert row["gmacs"] > count_gmacs(model.backbone, x) + 0.1


def test_paper_figures_only_beside_the_papers_widths(monkeypatch):
    """Table 1 is C = 2048, C^ = 256: a 96x96 row of narrower blocks is not comparable with it."""
    from ann.analysis import efficiency

    monkeypatch.setattr(efficiency, "measure_all", lambda *a: {"time_ms": 1.0, "peak_mem_mb": 1.0})
    narrow = bench_block("apnb", 96, 96, repeats=1, channels=64, key=16)
    assert "paper_gflops" not in narrow and "paper_mem_mb" not in narrow
    assert {"paper_gflops", "paper_time_ms"} <= set(bench_block("apnb", 96, 96, repeats=1))


@pytest.mark.parametrize("option", [["--repeats", "-1"], ["--channels", "0"], ["--threads", "0"]])
def test_cli_refuses_counts_below_one(option, capsys):
    with pytest.raises(SystemExit):
        main(["block", "--size", "8x6", "--channels", "16", "--key", "8", *option])
    assert option[0] in capsys.readouterr().err


def test_cli_refuses_a_json_folder_and_a_bad_device(tmp_path):
    with pytest.raises(SystemExit, match="is a folder"):
        main(["block", "--size", "8x6", "--channels", "16", "--key", "8", "--json", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a device name"):
        main(["block", "--size", "8x6", "--channels", "16", "--key", "8", "--device", "gpu"])


@pytest.mark.parametrize("kind", ["apnb", "afnb"])
@pytest.mark.parametrize("scope", ["attention", "block"])
def test_counts_with_value_channels_other_than_key_channels(kind, scope):
    # The app's models have value != key widths; a count that used the key width for the value
    # conv and Eq. 10 would agree with every test above, where the two are equal.
    sampling = SamplingConfig("pyramid_average", (1, 2))
    expected = closed_form(kind, 6, 10, 64, 8, 5, scope, V=24)
    assert block_gmacs(kind, 6, 10, 64, 8, sampling, scope=scope, value=24) == pytest.approx(expected)


def test_paper_figures_of_a_wide_feature_map_are_found(monkeypatch):
    """Table 1's 256x128 (width x height) rows: the lookup must not swap width and height."""
    from ann.analysis import efficiency

    monkeypatch.setattr(efficiency, "measure_all", lambda *a: {"time_ms": 1.0, "peak_mem_mb": 1.0})
    monkeypatch.setattr(efficiency, "block_inputs", lambda *a: ())  # nothing is run: no 256 MB inputs
    monkeypatch.setattr(efficiency, "block_gmacs", lambda *a, **k: 0.0)
    row = bench_block("apnb", 256, 128, repeats=1)
    assert (row["width"], row["height"]) == (256, 128)
    assert (row["paper_gflops"], row["paper_mem_mb"], row["paper_time_ms"]) == (43.5, 277, 30.8)


def test_cpu_figures_are_medians_in_ms_of_warm_calls(monkeypatch):
    """One call profiled as the warm-up (warmup=1), then `repeats` timed calls: a slow outlier (a
    neighbour's job on the shared cores) moves the median, not the reported figure."""
    from types import SimpleNamespace

    import ann.timing as timing

    clock = {"wall": 0.0, "cpu": 0.0}
    steps = iter([(0.5, 0.5), (0.001, 0.002), (0.001, 0.002), (0.010, 0.020)])  # s per call: wall, cpu
    calls = []

    def fn():
        wall, cpu = next(steps)
        clock["wall"] += wall
        clock["cpu"] += cpu
        calls.append(1)

    fake = SimpleNamespace(perf_counter=lambda: clock["wall"], process_time=lambda: clock["cpu"])
    monkeypatch.setattr(timing, "time", fake)
    monkeypatch.setattr(timing, "cpu_peak_mb", lambda f: (f(), 3.0)[1])
    stats = timing.measure_all(fn, "cpu", repeats=3, warmup=1)
    assert len(calls) == 4
    assert stats == pytest.approx({"time_ms": 1.0, "peak_mem_mb": 3.0, "cpu_time_ms": 2.0})


def test_the_cpu_is_named_with_its_cores():
    import os

    from ann.timing import environment

    assert environment("cpu")["device_name"].endswith(f", {os.cpu_count()} cores")
