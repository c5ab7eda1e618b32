"""Every convolution, batch norm and pooling of ResNet-18-CIFAR and ResNet-20, minires against PyTorch.

    python -m benchmarks.bench_layers                       # both models, batch 128
    python -m benchmarks.bench_layers --models resnet20 --batch-size 64 --iters 10

The shapes come from the models themselves: a minires forward and backward at batch 2 with
hooks on every layer records each layer's hyper-parameters, its input shape, and the memory
layout its input and upstream gradient have inside the network (a convolution's output is an
NCHW view of channels-last memory, and the next layers keep that layout; minires's layers are
timed on inputs of that same layout, PyTorch's on its own contiguous NCHW). Equal layers are
timed once, with the batch set to ``--batch-size``.

For each layer, forward and backward are timed separately (the backward computes the input
gradient and the parameter gradients, in PyTorch too: the input requires grad), in worker
processes that alternate minires, torch, minires, torch ... (see ``harness.py``); each worker
runs ``--warmup`` untimed passes per layer and takes the median of ``--iters`` timed ones, and
the report takes the median over the ``--repeats`` workers.

For each convolution the report also gives the achieved GFLOP/s: one GEMM of
``2*N*H_out*W_out*C_out*(C_in/groups)*kh*kw`` flops forward and two backward (the weight gradient
and the input gradient), next to NumPy's own matmul on the same GEMM shape,
``cols (pixels x K) @ W (K x C_out)`` with K = kh*kw*C_in/groups, timed in the minires worker.
The *GEMM share* is the time of the layer's own ``numpy.matmul`` calls (timed inside the layer,
see ``MatmulClock``) over the layer's time: the rest is im2col, col2im and layout work, and the
target is >= 75% for every 3x3 convolution of ResNet-18-CIFAR on the im2col and shifted routes.
Beside it, the same with NumPy's time for one plain GEMM per product (``cols @ W`` forward;
``colsᵀ @ dY`` and, for dx, ``dY @ Wᵀ`` or at stride 1 ``im2col(dy) @ W_flipped``, backward) in
place of the layer's calls: how close the layer is to its GEMMs done once each.

Each convolution's row names its route (``minires/nn/conv.py``'s dispatcher: Winograd, shifted
GEMM, or im2col with the flipped-kernel or col2im input gradient). The Winograd route's 16 GEMMs
do 2.25x fewer multiply-adds than the im2col GEMM whose flops the GFLOP/s count: its rate is an
effective one, and its layer time can be below NumPy's time for the im2col GEMMs (a ratio above
100% in the last column).
"""
import json
import os
import sys
import time

import numpy as np

from .harness import (FRAMEWORKS, alternate, blas_description, command_line, machine_lines, markdown_table,
                     median, argument_parser, serve_as_worker, torch_description)

MODULE = "benchmarks.bench_layers"   # run as python -m MODULE from the checkout's root
MODEL_LABELS = {"resnet18_cifar": "R18", "resnet20": "R20"}
GEMM_SHARE_TARGET = 0.75

# the layers timed, with the constructor arguments (PyTorch's names, which minires shares) to rebuild them
CONSTRUCTOR_ARGS = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "AdaptiveAvgPool2d": ("output_size",),
}
TIME_HEADER = ["layer", "input C×H×W", "used in", "minires x / dy layout", "fwd minires (ms)", "fwd PyTorch (ms)",
               "fwd ratio", "bwd minires (ms)", "bwd PyTorch (ms)", "bwd ratio"]
CONV_HEADER = ["convolution", "input C×H×W", "route", "GEMM P×K×C_out", "minires GFLOP/s fwd / bwd",
               "PyTorch GFLOP/s fwd / bwd", "NumPy matmul GFLOP/s", "GEMM share fwd / bwd / both",
               "NumPy GEMMs / layer time fwd / bwd / both"]


# -- the shapes, read off the models ---------------------------------------------------------------
def memory_order(array):
    """The axes from the outermost to the innermost in memory, as letters: "NCHW", "NHWC" ..."""
    order = sorted(range(array.ndim), key=lambda axis: -array.strides[axis])
    return "".join("NCHW"[axis] for axis in order)


def array_in_order(rng, shape, order):
    """A random float32 array of ``shape`` (NCHW axes) laid out in memory in ``order``."""
    axes = ["NCHW".index(letter) for letter in order]
    stored = rng.standard_normal([shape[axis] for axis in axes], dtype=np.float32)
    return stored.transpose(np.argsort(axes))


def _constructor_args(module):
    args = {name: getattr(module, name) for name in CONSTRUCTOR_ARGS[type(module).__name__]}
    if type(module).__name__ == "Conv2d":
        args["bias"] = module.bias is not None
    return args


def conv_route(module, layer):
    """The route minires's dispatcher took for a convolution's last forward (its cache says which)."""
    cache = type(module._saved_for_backward()).__name__
    if cache == "WinogradConvCache":
        return "Winograd"
    if cache == "ShiftedConvCache":
        return "shifted GEMM"
    return "im2col, flipped dx" if flipped_kernel_route(layer) else "im2col, col2im dx"


def collect_layers(model_names, batch_size):
    """The distinct layers of the models, in order of first use, each a JSON-ready dict.

    A layer: ``{"type", "args", "input" (N, C, H, W), "input_order", "grad_order", "uses"}``,
    ``uses`` counting how often each model applies it, and for a convolution its ``route``.
    """
    from minires import models
    layers = {}
    for name in model_names:
        model = getattr(models, name)()
        seen = {}

        def record_input(module, inputs, output):
            seen[module] = {"type": type(module).__name__, "args": _constructor_args(module),
                            "input": [batch_size, *inputs[0].shape[1:]], "input_order": memory_order(inputs[0])}
            if seen[module]["type"] == "Conv2d":
                seen[module]["route"] = conv_route(module, seen[module])

        def record_gradient(module, grad_input, grad_output):
            seen[module]["grad_order"] = memory_order(grad_output)

        for module in model.modules():
            if type(module).__name__ in CONSTRUCTOR_ARGS:
                module.register_forward_hook(record_input)
                module.register_backward_hook(record_gradient)
        logits = model(np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32))
        model.backward(np.ones_like(logits))
        for layer in seen.values():
            key = json.dumps(layer, sort_keys=True, default=list)
            entry = layers.setdefault(key, json.loads(key) | {"uses": {}})
            entry["uses"][name] = entry["uses"].get(name, 0) + 1
    kinds = list(CONSTRUCTOR_ARGS)
    return sorted(layers.values(), key=lambda layer: kinds.index(layer["type"]))  # stable: first use


# -- the convolution's GEMMs -----------------------------------------------------------------------
def gemm_shape(layer):
    """``(groups, pixels P, K, C_out per group)`` of a convolution's forward GEMM."""
    N, C, H, W = layer["input"]
    args = layer["args"]
    (kh, kw), (s_h, s_w), (d_h, d_w) = args["kernel_size"], args["stride"], args["dilation"]
    (p_h, p_w), groups = args["padding"], args["groups"]
    H_out = (H + 2 * p_h - d_h * (kh - 1) - 1) // s_h + 1
    W_out = (W + 2 * p_w - d_w * (kw - 1) - 1) // s_w + 1
    return groups, N * H_out * W_out, kh * kw * C // groups, args["out_channels"] // groups


def gemm_flops(layer):
    """Flops of one of a convolution's GEMMs: ``2*P*K*C_out`` (forward 1 GEMM, backward 2)."""
    groups, pixels, k, c_out = gemm_shape(layer)
    return 2 * groups * pixels * k * c_out


def flipped_kernel_route(layer):
    """Whether minires computes dx as a convolution of dy (stride 1, padding within the kernel).

    ``layer`` may come through JSON (a worker's config): its pairs are then lists, not tuples.
    """
    args = layer["args"]
    reach = [d * (k - 1) for k, d in zip(args["kernel_size"], args["dilation"])]
    return tuple(args["stride"]) == (1, 1) and all(p <= r for p, r in zip(args["padding"], reach))


def time_gemms(layer, rng, iters, warmup):
    """Median seconds of NumPy's matmul on the convolution's three GEMM shapes."""
    groups, pixels, k, c_out = gemm_shape(layer)
    cols = rng.standard_normal((groups, pixels, k), dtype=np.float32)
    weights = rng.standard_normal((groups, k, c_out), dtype=np.float32)
    grads = rng.standard_normal((groups, pixels, c_out), dtype=np.float32)
    if flipped_kernel_route(layer):  # im2col(dy) @ W_flipped: (N*H*W, kh*kw*C_out/G) @ (.., C/G)
        N, C, H, W = layer["input"]
        c_in, reach = C // groups, k // (C // groups) * c_out
        dy_cols = rng.standard_normal((groups, N * H * W, reach), dtype=np.float32)
        input_product = (dy_cols, rng.standard_normal((groups, reach, c_in), dtype=np.float32),
                         np.empty((groups, N * H * W, c_in), np.float32))
    else:                            # dcols = dY @ Wᵀ, then col2im
        input_product = (grads, weights.transpose(0, 2, 1), np.empty((groups, pixels, k), np.float32))
    products = {  # name -> (left, right, output buffer)
        "forward": (cols, weights, np.empty((groups, pixels, c_out), np.float32)),      # Y = cols @ W
        "weight": (cols.transpose(0, 2, 1), grads, np.empty((groups, k, c_out), np.float32)),  # colsᵀ @ dY
        "input": input_product,
    }
    seconds = {}
    for name, (left, right, out) in products.items():
        times = []
        for _ in range(warmup + iters):
            start = time.perf_counter()
            np.matmul(left, right, out=out)
            times.append(time.perf_counter() - start)
        seconds[name] = median(times[warmup:])
    return seconds


# -- the workers -----------------------------------------------------------------------------------
class MatmulClock:
    """Adds up the seconds spent in ``numpy.matmul`` while installed (``with MatmulClock() as clock``).

    minires's layers call ``xp.matmul`` with ``xp`` the ``numpy`` module, so replacing the module's
    attribute in this worker process measures a convolution's own GEMMs inside the layer.
    """

    def __init__(self):
        self.seconds = 0.0
        self._matmul = np.matmul

    def _timed_matmul(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._matmul(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def __enter__(self):
        np.matmul = self._timed_matmul
        return self

    def __exit__(self, *exc_info):
        np.matmul = self._matmul


def time_passes(forward, backward, reset, iters, warmup, clock):
    """Median seconds of ``forward()``, of ``backward(output)`` and of the matmuls inside each.

    ``reset()`` clears the gradients before each pass; ``clock`` is a ``MatmulClock``.
    """
    samples = {"forward": [], "backward": [], "forward_gemm": [], "backward_gemm": []}
    for index in range(warmup + iters):
        reset()
        start, gemm_start = time.perf_counter(), clock.seconds
        output = forward()
        middle, gemm_middle = time.perf_counter(), clock.seconds
        backward(output)
        end, gemm_end = time.perf_counter(), clock.seconds
        del output
        if index >= warmup:
            for name, value in (("forward", middle - start), ("backward", end - middle),
                                ("forward_gemm", gemm_middle - gemm_start), ("backward_gemm", gemm_end - gemm_middle)):
                samples[name].append(value)
    return {name: median(values) for name, values in samples.items()}


def _as_arguments(args):
    return {name: tuple(value) if isinstance(value, list) else value for name, value in args.items()}


def time_minires_layer(layer, rng, iters, warmup):
    from minires import nn
    module = getattr(nn, layer["type"])(**_as_arguments(layer["args"]))
    x = array_in_order(rng, layer["input"], layer["input_order"])
    dy = array_in_order(rng, module(x).shape, layer["grad_order"])
    with MatmulClock() as clock:
        return time_passes(lambda: module(x), lambda _: module.backward(dy), module.zero_grad, iters, warmup, clock)


def time_torch_layer(layer, rng, iters, warmup):
    import torch
    module = getattr(torch.nn, layer["type"])(**_as_arguments(layer["args"]))
    x = torch.from_numpy(rng.standard_normal(layer["input"], dtype=np.float32)).requires_grad_()
    with torch.no_grad():
        dy = torch.from_numpy(rng.standard_normal(tuple(module(x).shape), dtype=np.float32))

    def reset():
        x.grad = None
        module.zero_grad(set_to_none=True)

    idle_clock = MatmulClock()  # never installed: PyTorch makes no NumPy matmuls
    return time_passes(lambda: module(x), lambda y: y.backward(dy), reset, iters, warmup, idle_clock)


def worker(framework, config):
    """Time every layer of ``config["layers"]`` (and, for minires, NumPy's GEMMs of the convs)."""
    rng = np.random.default_rng(0)
    iters, warmup = config["iters"], config["warmup"]
    if framework == "torch":
        import torch
        torch.set_num_threads(config["threads"])
        time_layer, description = time_torch_layer, torch_description(torch)
    else:
        time_layer, description = time_minires_layer, blas_description()
    timings = []
    for layer in config["layers"]:
        timing = time_layer(layer, rng, iters, warmup)
        if framework == "minires" and layer["type"] == "Conv2d":
            timing["numpy_gemm"] = time_gemms(layer, rng, iters, warmup)
        timings.append(timing)
    return {"timings": timings, "description": description}


# -- the parent ------------------------------------------------------------------------------------
def run_benchmark(model_names=tuple(MODEL_LABELS), batch_size=128, iters=5, repeats=3, warmup=1, threads=2):
    """Collect the layers, run the alternating workers; returns what ``format_report`` prints."""
    load_before = os.getloadavg()[0]
    layers = collect_layers(model_names, batch_size)
    config = dict(layers=layers, iters=iters, warmup=warmup, threads=threads)
    runs = alternate(MODULE, {framework: config for framework in FRAMEWORKS}, repeats,
                     describe=lambda _, run: f"{sum(t['forward'] + t['backward'] for t in run['timings']):.2f} s "
                                             f"for all {len(layers)} layers")
    return {"layers": layers, "runs": runs, "batch_size": batch_size, "iters": iters, "repeats": repeats,
            "warmup": warmup, "threads": threads, "models": list(model_names),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def _median_of(timings):
    """Key by key, the median of equally keyed (possibly nested) dicts of seconds."""
    first = timings[0]
    return {key: _median_of([t[key] for t in timings]) if isinstance(first[key], dict)
            else median([t[key] for t in timings]) for key in first}


def layer_name(layer):
    args = layer["args"]
    kind = layer["type"]
    if kind == "Conv2d":
        (kh, kw), (s_h, s_w) = args["kernel_size"], args["stride"]
        stride = "" if (s_h, s_w) == (1, 1) else f" /{s_h}" if s_h == s_w else f" /{s_h}×{s_w}"
        groups = f" g{args['groups']}" if args["groups"] != 1 else ""
        return f"conv {kh}×{kw}{stride} {args['in_channels']}→{args['out_channels']}{groups}"
    if kind == "BatchNorm2d":
        return f"batch norm {args['num_features']}"
    if kind == "AdaptiveAvgPool2d":
        size = args["output_size"]
        return f"adaptive avg pool → {'×'.join(map(str, size)) if isinstance(size, list) else size}"
    return f"{'max' if kind == 'MaxPool2d' else 'avg'} pool {args['kernel_size']} /{args['stride']}"


def _uses(layer):
    return ", ".join(f"{MODEL_LABELS.get(name, name)} ×{count}" for name, count in layer["uses"].items())


def _shape(layer):
    return "×".join(str(size) for size in layer["input"][1:])


def _time_row(layer, mine, theirs):
    return [layer_name(layer), _shape(layer), _uses(layer), f"{layer['input_order']} / {layer['grad_order']}",
            f"{1000 * mine['forward']:.2f}", f"{1000 * theirs['forward']:.2f}",
            f"{mine['forward'] / theirs['forward']:.2f}", f"{1000 * mine['backward']:.2f}",
            f"{1000 * theirs['backward']:.2f}", f"{mine['backward'] / theirs['backward']:.2f}"]


def _conv_row(layer, mine, theirs):
    """The GFLOP/s and GEMM shares of a convolution; also its in-layer GEMM share (fwd + bwd)."""
    flops = gemm_flops(layer)
    groups, pixels, k, c_out = gemm_shape(layer)
    numpy_gemm = mine["numpy_gemm"]
    numpy_backward = numpy_gemm["weight"] + numpy_gemm["input"]
    layer_time = mine["forward"] + mine["backward"]
    share = (mine["forward_gemm"] + mine["backward_gemm"]) / layer_time
    row = [layer_name(layer), _shape(layer), layer["route"],
           f"{pixels}×{k}×{c_out}" + (f" (×{groups})" if groups > 1 else ""),
           f"{flops / mine['forward'] / 1e9:.0f} / {2 * flops / mine['backward'] / 1e9:.0f}",
           f"{flops / theirs['forward'] / 1e9:.0f} / {2 * flops / theirs['backward'] / 1e9:.0f}",
           f"{flops / numpy_gemm['forward'] / 1e9:.0f}",
           f"{mine['forward_gemm'] / mine['forward']:.0%} / {mine['backward_gemm'] / mine['backward']:.0%}"
           f" / {share:.0%}",
           f"{numpy_gemm['forward'] / mine['forward']:.0%} / {numpy_backward / mine['backward']:.0%}"
           f" / {(numpy_gemm['forward'] + numpy_backward) / layer_time:.0%}"]
    return row, share


def _model_total(name, layers, timings):
    """One line: the layers of model ``name``, each as often as the model applies it, fwd + bwd."""
    sums = [sum(layer["uses"].get(name, 0) * (timing[f]["forward"] + timing[f]["backward"])
                for layer, timing in zip(layers, timings)) for f in FRAMEWORKS]
    return (f"- {name} ({MODEL_LABELS.get(name, name)}): its convolutions, batch norms and poolings, each "
            f"counted as often as the model applies it, forward + backward: minires {1000 * sums[0]:.0f} ms, "
            f"PyTorch {1000 * sums[1]:.0f} ms, ratio {sums[0] / sums[1]:.2f}")


def format_report(result):
    """The Markdown report: times of every layer, the convolutions' GFLOP/s, per-model sums, machine."""
    layers, runs = result["layers"], result["runs"]
    timings = [{f: _median_of([run["timings"][index] for run in runs[f]]) for f in FRAMEWORKS}
               for index in range(len(layers))]
    time_rows, conv_rows, short_of_target = [], [], []
    for layer, timing in zip(layers, timings):
        time_rows.append(_time_row(layer, timing["minires"], timing["torch"]))
        if layer["type"] == "Conv2d":
            row, share = _conv_row(layer, timing["minires"], timing["torch"])
            conv_rows.append(row)
            if layer["args"]["kernel_size"] == [3, 3] and layer["route"] != "Winograd" \
                    and share < GEMM_SHARE_TARGET:
                short_of_target.append(f"{layer_name(layer)} on {_shape(layer)}, {_uses(layer)} ({share:.0%})")
    info = {f: runs[f][0]["description"] for f in FRAMEWORKS}
    return "\n".join([
        f"### Layers of {', '.join(result['models'])}, batch {result['batch_size']}, float32, "
        f"{result['threads']} threads", "",
        markdown_table(TIME_HEADER, time_rows), "",
        f"Median over {result['repeats']} workers per framework of each worker's median of "
        f"{result['iters']} passes (after {result['warmup']} warm-up passes), alternating minires / "
        "PyTorch. Ratios are minires / PyTorch. Backward computes the input and parameter gradients. "
        "minires gets its input x and upstream gradient dy in the memory layout they have inside the "
        "model (NHWC: an NCHW view of channels-last memory; a layer seen with two layouts gets two rows), "
        "PyTorch contiguous NCHW tensors.", "",
        *[_model_total(name, layers, timings) for name in result["models"]], "",
        "#### Convolutions: GFLOP/s and the GEMMs' share of minires's time", "",
        markdown_table(CONV_HEADER, conv_rows), "",
        "GFLOP/s count one GEMM forward and two backward, the im2col GEMM's flops on every route: on the "
        "Winograd route, whose 16 GEMMs do 2.25× fewer multiply-adds, an effective rate, which can exceed "
        "NumPy's matmul. Route: the one minires's dispatcher takes (`minires/nn/conv.py`). NumPy matmul: the forward GEMM "
        "`cols (P×K) @ W (K×C_out)` alone, on fresh arrays in the minires worker. GEMM share: the time of "
        "the layer's own `numpy.matmul` calls over the layer's time (the rest is im2col, col2im and "
        "layout work). NumPy GEMMs / layer time: the same with NumPy's time for one GEMM per product "
        "(forward `cols @ W`; backward `colsᵀ @ dY` and, for dx, `dY @ Wᵀ`, or at stride 1 "
        "`im2col(dy) @ W_flipped`) in place of the layer's own calls. "
        + "The GEMM-share target is for the im2col and shifted routes: the Winograd route's GEMMs are 2.25× "
        "smaller, so its transforms take a larger share of a shorter time (judge it by its time). "
        + (f"3×3 convolutions whose GEMM share is below the {GEMM_SHARE_TARGET:.0%} target: "
           f"{'; '.join(short_of_target)}." if short_of_target
           else f"Every 3×3 convolution meets the {GEMM_SHARE_TARGET:.0%} GEMM-share target."),
        "",
        *machine_lines(result["threads"], info, result["load_before"], result["load_after"]),
        f"- command: `{command_line(MODULE)}`",
    ])


def parse_args(argv):
    p = argument_parser(__doc__, warmup=1, warmup_help="untimed passes per layer and worker")
    p.add_argument("--models", default=",".join(MODEL_LABELS),
                   help="comma-separated minires model names (default: %(default)s)")
    p.add_argument("--iters", type=int, default=5, help="timed passes per layer and worker")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if serve_as_worker(argv, worker):
        return
    args = parse_args(argv)
    model_names = [name.strip() for name in args.models.split(",") if name.strip()]
    print(f"layers of {', '.join(model_names)}, batch {args.batch_size}: alternating worker processes ...",
          file=sys.stderr)
    print(format_report(run_benchmark(model_names, args.batch_size, args.iters, args.repeats, args.warmup,
                                      args.threads)))


if __name__ == "__main__":
    main()
