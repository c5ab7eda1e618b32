"""The benchmark scripts run end to end on a tiny configuration and print their tables.

Nothing here checks a timing: only that the workers run, that the tables have their columns and
rows, that the shapes are read off the models correctly and that both frameworks train alike.
"""
import numpy as np

from benchmarks import bench_layers, bench_train_step
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
