"""The Winograd route against the route each convolution takes without it: layer by layer, and whole steps.

    python -m benchmarks.bench_conv_routes                              # layers, batch 64 and 128, 2 threads
    python -m benchmarks.bench_conv_routes --threads 1 --clock cpu      # per MPI rank, on a busy machine
    python -m benchmarks.bench_conv_routes --step resnet18_cifar --batch-sizes 64 --threads 1 --clock cpu

Layers: every stride-1 3x3 convolution of the models (read off them as ``bench_layers`` does, with
the memory layout their input and upstream gradient have in the network), at each batch size,
forward and backward, on the route the dispatcher takes without Winograd (shifted GEMM, or im2col
with the flipped-kernel input gradient) and on the Winograd route (``minires/nn/conv_winograd.py``).
Winograd is switched off by raising its minimum channel count, so the same layer object and the
same arrays are timed both ways, alternating off, on, off, on ... (``--iters`` rounds after
``--warmup``) in a worker process whose thread count is set before NumPy is imported; the report
takes medians, over the rounds and then over the ``--repeats`` workers. Every layer is timed on
both routes, even below the channel count from which the dispatcher takes Winograd: the table is
where that threshold comes from.

Step (``--step MODEL``): a whole training step instead (forward, cross-entropy, backward, SGD with
momentum), alternating Winograd off and Winograd where the dispatcher takes it (its own rule),
one step each per round.

Clock: ``wall`` (``perf_counter``) on a quiet machine; ``cpu`` (``process_time``, the CPU time of
the worker's threads) when other work shares the cores: at one thread it counts this process's
work only, not the time it waits for a core (busy caches still slow it down).
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

from .bench_layers import MODEL_LABELS, array_in_order, collect_layers, conv_route, layer_name
from .harness import (alternate, blas_description, command_line, machine_lines, markdown_table, median,
                      serve_as_worker)

MODULE = "benchmarks.bench_conv_routes"   # run as python -m MODULE from the checkout's root
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
LAYER_HEADER = ["convolution", "input C×H×W", "batch", "used in", "route without Winograd", "dispatcher takes",
                "fwd without / Winograd (ms)", "fwd speed-up", "bwd without / Winograd (ms)", "bwd speed-up"]


@contextlib.contextmanager
def winograd(route):
    """Inside the block the dispatcher takes the Winograd route for no convolution (``"off"``), for
    every 3x3 stride-1 one whatever its channels and tiles (``"everywhere"``), or where it applies
    by its own rule (``"dispatcher"``)."""
    from minires.nn import conv_winograd
    minimums = conv_winograd._MIN_CHANNELS, conv_winograd._MIN_TILE_CHANNELS
    conv_winograd._MIN_CHANNELS, conv_winograd._MIN_TILE_CHANNELS = {
        "off": (sys.maxsize, sys.maxsize), "everywhere": (0, 0), "dispatcher": minimums}[route]
    try:
        yield
    finally:
        conv_winograd._MIN_CHANNELS, conv_winograd._MIN_TILE_CHANNELS = minimums


def stride_one_3x3(layer):
    args = layer["args"]
    return (layer["type"] == "Conv2d" and args["kernel_size"] == [3, 3] and args["stride"] == [1, 1]
            and args["dilation"] == [1, 1] and args["groups"] == 1)


# -- the worker ------------------------------------------------------------------------------------
def _alternate_routes(run_off, run_on, rounds, warmup, clock):
    """``run_off()`` and ``run_on()`` alternating; each returns a dict of seconds: their medians."""
    samples = {"off": [], "on": []}
    for index in range(warmup + rounds):
        for name, run in (("off", run_off), ("on", run_on)):
            seconds = run(clock)
            if index >= warmup:
                samples[name].append(seconds)
    return {name: {key: median([s[key] for s in runs]) for key in runs[0]} for name, runs in samples.items()}


def time_layer(layer, batch_size, rounds, warmup, clock):
    from minires import nn
    args = {name: tuple(value) if isinstance(value, list) else value for name, value in layer["args"].items()}
    module = nn.Conv2d(**args)
    rng = np.random.default_rng(0)
    x = array_in_order(rng, [batch_size, *layer["input"][1:]], layer["input_order"])
    dy = array_in_order(rng, module(x).shape, layer["grad_order"])
    dispatched = conv_route(module, layer)   # the dispatcher's own choice
    with winograd("off"):
        module(x)
        route = conv_route(module, layer)

    def passes(route):
        def run(clock):
            with winograd(route):
                module.zero_grad()
                start = clock()
                module(x)
                middle = clock()
                module.backward(dy)
                return {"forward": middle - start, "backward": clock() - middle}
        return run

    return {"route": route, "dispatched": dispatched,
            **_alternate_routes(passes("off"), passes("everywhere"), rounds, warmup, clock)}


def time_steps(model_name, batch_size, rounds, warmup, clock):
    import minires
    from minires import models, nn, optim
    minires.manual_seed(0)
    model = getattr(models, model_name)()
    model.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, 3, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, batch_size)

    def step(route):
        def run(clock):
            with winograd(route):
                start = clock()
                criterion(model(images), labels)
                optimizer.zero_grad()
                model.backward(criterion.backward())
                optimizer.step()
                return {"step": clock() - start}
        return run

    return _alternate_routes(step("off"), step("dispatcher"), rounds, warmup, clock)


def worker(framework, config):
    clock = CLOCKS[config["clock"]]
    rounds, warmup = config["iters"], config["warmup"]
    if config["step"]:
        timings = [time_steps(config["step"], batch, rounds, warmup, clock) for batch in config["batch_sizes"]]
    else:
        timings = [time_layer(layer, batch, rounds, warmup, clock)
                   for batch in config["batch_sizes"] for layer in config["layers"]]
    return {"timings": timings, "description": blas_description()}


# -- the parent ------------------------------------------------------------------------------------
def run_benchmark(models=tuple(MODEL_LABELS), batch_sizes=(64, 128), step=None, iters=5, repeats=1,
                  warmup=1, threads=2, clock="wall"):
    """The layers (or, with ``step``, that model's training step) in ``repeats`` workers."""
    load_before = os.getloadavg()[0]
    layers = [] if step else [layer for layer in collect_layers(models, 2) if stride_one_3x3(layer)]
    config = dict(layers=layers, batch_sizes=list(batch_sizes), step=step, iters=iters, warmup=warmup,
                  threads=threads, clock=clock)
    runs = alternate(MODULE, {"minires": config}, repeats)["minires"]
    timings = [_median_over_workers([run["timings"][index] for run in runs]) for index in range(len(runs[0]["timings"]))]
    return {"layers": layers, "timings": timings, "description": runs[0]["description"], "models": list(models),
            "batch_sizes": list(batch_sizes), "step": step, "iters": iters, "repeats": repeats, "warmup": warmup,
            "threads": threads, "clock": clock, "load_before": load_before, "load_after": os.getloadavg()[0]}


def _median_over_workers(timings):
    first = timings[0]
    return {key: _median_over_workers([t[key] for t in timings]) if isinstance(first[key], dict)
            else first[key] if isinstance(first[key], str) else median([t[key] for t in timings]) for key in first}


def _pair(off, on, key):
    return f"{1000 * off[key]:.1f} / {1000 * on[key]:.1f}", f"{off[key] / on[key]:.2f}"


def _layer_rows(result):
    rows, index = [], 0
    for batch in result["batch_sizes"]:
        for layer in result["layers"]:
            timing = result["timings"][index]
            index += 1
            uses = ", ".join(f"{MODEL_LABELS.get(name, name)} ×{count}" for name, count in layer["uses"].items())
            shape = "×".join(str(size) for size in layer["input"][1:])
            rows.append([layer_name(layer), shape, str(batch), uses, timing["route"], timing["dispatched"],
                         *_pair(timing["off"], timing["on"], "forward"), *_pair(timing["off"], timing["on"], "backward")])
    return rows


def _model_sums(result):
    """Per model and batch: its stride-1 3x3 convolutions, each as often as it applies them, fwd + bwd,
    without Winograd, with it everywhere, and on the routes the dispatcher takes."""
    lines = []
    for name in result["models"]:
        for position, batch in enumerate(result["batch_sizes"]):
            timings = result["timings"][position * len(result["layers"]):(position + 1) * len(result["layers"])]

            def total(choose):
                return sum(layer["uses"].get(name, 0) * (t[choose(t)]["forward"] + t[choose(t)]["backward"])
                           for layer, t in zip(result["layers"], timings))

            without, everywhere = total(lambda t: "off"), total(lambda t: "on")
            dispatched = total(lambda t: "on" if t["dispatched"] == "Winograd" else "off")
            if without:
                lines.append(f"- {name}, batch {batch}: its stride-1 3×3 convolutions, forward + backward: "
                             f"{1000 * without:.0f} ms without Winograd, {1000 * everywhere:.0f} ms with it on "
                             f"every one, {1000 * dispatched:.0f} ms where the dispatcher takes it "
                             f"(speed-up {without / dispatched:.2f})")
    return lines


def format_report(result):
    clock = {"wall": "wall-clock time", "cpu": "CPU time (process_time)"}[result["clock"]]
    if result["step"]:
        rows = [[result["step"], str(batch), *_pair(t["off"], t["on"], "step")]
                for batch, t in zip(result["batch_sizes"], result["timings"])]
        body = [f"### Training step of {result['step']}: Winograd off / where it applies, float32, {result['threads']} threads, "
                f"{clock}", "",
                markdown_table(["model", "batch", "step without / with Winograd where it applies (ms)", "speed-up"],
                               rows)]
    else:
        body = [f"### Stride-1 3×3 convolutions: Winograd against the route without it, float32, "
                f"{result['threads']} threads, {clock}", "",
                markdown_table(LAYER_HEADER, _layer_rows(result)), "", *_model_sums(result)]
    return "\n".join([
        *body, "",
        f"Medians of {result['iters']} alternating rounds (after {result['warmup']} warm-up rounds) in each of "
        f"{result['repeats']} worker processes, then over the workers; {clock}.", "",
        *machine_lines(result["threads"], {"minires": result["description"], "torch": "not used here"},
                       result["load_before"], result["load_after"]),
        f"- command: `{command_line(MODULE)}`",
    ])


def _comma_list(convert):
    return lambda text: [convert(item.strip()) for item in text.split(",") if item.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=_comma_list(str), default=list(MODEL_LABELS),
                   help="comma-separated minires model names (default: both)")
    p.add_argument("--batch-sizes", type=_comma_list(int), default=[64, 128], help="comma-separated (default: 64,128)")
    p.add_argument("--step", default=None, help="time this model's whole training step instead of the layers")
    p.add_argument("--iters", type=int, default=5, help="timed rounds per worker (each: off, then on)")
    p.add_argument("--repeats", type=int, default=1, help="worker processes, one after the other")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds at the start of each worker")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads of the worker")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not serve_as_worker(argv, worker):
        args = parse_args(argv)
        print(f"{args.step or ', '.join(args.models)}, batch {args.batch_sizes}: a worker process ...", file=sys.stderr)
        print(format_report(run_benchmark(**vars(args))))


if __name__ == "__main__":
    main()
