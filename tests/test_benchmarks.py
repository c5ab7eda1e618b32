"""The benchmark scripts run end to end on a tiny configuration and print their tables.

Nothing here checks a timing: only that the workers run, that the tables have their columns and
rows, that the shapes are read off the models correctly and that both frameworks train alike.
"""
import numpy as np
import pytest

from benchmarks import bench_conv_routes, bench_layers, bench_train_step
from benchmarks.harness import parse_markdown_table


def test_array_in_order_has_the_shape_and_the_memory_layout_asked_for():
    rng = np.random.default_rng(0)
    for order in ("NCHW", "NHWC", "CNHW"):
        x = bench_layers.array_in_order(rng, (2, 3, 4, 5), order)
        assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
        assert bench_layers.memory_order(x) == order


def test_collect_layers_finds_every_layer_of_resnet20():
    layers = bench_layers.collect_layers(["resnet20"], batch_size=8)
    uses = {}
    for layer in layers:
        assert layer["input"][0] == 8
        uses[layer["type"]] = uses.get(layer["type"], 0) + layer["uses"]["resnet20"]
    assert uses == {"Conv2d": 19, "BatchNorm2d": 19, "AdaptiveAvgPool2d": 1}
    first = layers[0]
    assert first["args"]["in_channels"] == 3 and first["input_order"] == "NCHW"  # the images
    assert bench_layers.gemm_shape(first) == (1, 8 * 32 * 32, 27, 16)


def test_bench_layers_prints_both_tables():
    result = bench_layers.run_benchmark(["resnet20"], batch_size=2, iters=1, repeats=1, warmup=0, threads=1)
    report = bench_layers.format_report(result)
    header, rows = parse_markdown_table(report)
    assert header == bench_layers.TIME_HEADER
    assert len(rows) == len(result["layers"])
    conv_part = report[report.index("#### Convolutions"):]
    header, rows = parse_markdown_table(conv_part)
    assert header == bench_layers.CONV_HEADER
    assert len(rows) == sum(layer["type"] == "Conv2d" for layer in result["layers"])
    assert "command:" in report and "NumPy BLAS:" in report


def test_bench_layers_names_each_convolution_route():
    layers = bench_layers.collect_layers(["resnet18_cifar"], batch_size=2)
    routes = {bench_layers.layer_name(layer): layer["route"] for layer in layers if layer["type"] == "Conv2d"}
    assert routes["conv 3×3 3→64"] == "shifted GEMM"
    assert routes["conv 3×3 /2 64→128"] == "im2col, col2im dx"
    assert routes["conv 3×3 64→64"] == "Winograd"   # batch 2 of 32x32: 512 tiles of 64 channels
    assert routes["conv 3×3 512→512"] == "im2col, flipped dx"   # batch 2 of 4x4: too few tiles


def test_bench_conv_routes_times_both_routes_of_every_stride_one_3x3_layer():
    result = bench_conv_routes.run_benchmark(["resnet20"], batch_sizes=[2], iters=1, warmup=0, threads=1, clock="cpu")
    report = bench_conv_routes.format_report(result)
    header, rows = parse_markdown_table(report)
    assert header == bench_conv_routes.LAYER_HEADER
    assert [row[0] for row in rows] == ["conv 3×3 3→16", "conv 3×3 16→16", "conv 3×3 32→32", "conv 3×3 64→64"]
    assert [row[4] for row in rows] == ["shifted GEMM", "shifted GEMM", "im2col, flipped dx", "im2col, flipped dx"]
    assert [row[5] for row in rows] == [row[4] for row in rows]  # batch 2: too few tiles for Winograd
    assert "resnet20, batch 2: its stride-1 3×3 convolutions" in report and "CPU time" in report
    step = bench_conv_routes.run_benchmark(["resnet20"], [2], step="resnet20", iters=1, warmup=0, threads=1)
    _, rows = parse_markdown_table(bench_conv_routes.format_report(step))
    assert [row[:2] for row in rows] == [["resnet20", "2"]]


def test_bench_train_step_prints_its_table_and_both_frameworks_train_alike():
    result = bench_train_step.run_benchmark("resnet20", batch_size=2, steps=1, repeats=1, warmup=1, threads=1)
    report = bench_train_step.format_report(result)
    header, rows = parse_markdown_table(report)
    assert header == bench_train_step.TABLE_HEADER
    assert [row[2] for row in rows] == ["minires", "PyTorch eager"]
    assert rows[1][5] == "1.00"  # PyTorch is the reference of the ratio
    assert "(all steps agree)" in report  # same weights and data: the same losses, step by step
    for framework in ("minires", "torch"):
        run, = result["runs"][framework]
        assert run["peak_mb"] >= run["baseline_mb"] > 0


def test_bench_train_step_with_two_processes_trains_the_same_global_batch():
    pytest.importorskip("mpi4py", reason="the [mpi] extra (mpi4py, mpich) is not installed")
    result = bench_train_step.run_benchmark("resnet20", batch_size=2, steps=1, repeats=1, warmup=1, threads=1, ranks=2)
    report = bench_train_step.format_report(result)
    _, rows = parse_markdown_table(report)
    assert [row[2] for row in rows] == ["minires", "PyTorch eager", "minires, 2 processes"]
    assert "(all steps agree)" in report  # synchronised batch norm: the one-process losses
    assert "2 processes x 1 BLAS thread (mpiexec, synchronised batch norm, shards of 1/1 images)" in report
    run, = result["runs"]["minires-ranks"]
    assert [rank["shard"] for rank in run["ranks"]] == [1, 1]
    assert all(rank["peak_mb"] >= rank["baseline_mb"] > 0 and 0 <= rank["communication_share"] <= 1
               for rank in run["ranks"])
