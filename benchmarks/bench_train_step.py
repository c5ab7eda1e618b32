"""One training step of a ResNet, minires against PyTorch eager on the CPU: images/s and peak memory.

A step is what a training loop does per batch: forward, cross-entropy loss, backward, and an SGD
step with momentum and weight decay (lr 0.01, momentum 0.9, weight decay 5e-4 on every
parameter, in both). Both frameworks start from the same weights (a minires model built with a
fixed seed, saved to a file that both load) and train on the same batch of random images, so
their losses must agree step by step; the report prints them as a check.

    python -m benchmarks.bench_train_step --model resnet18_cifar --batch-size 128
    python -m benchmarks.bench_train_step --model resnet20 --batch-size 128 --steps 20 --repeats 5

Each framework runs in its own worker process (see ``harness.py``: thread pools must not
fight), alternating minires, torch, minires, torch ...; a worker imports its framework (the
memory baseline is read here), builds the model, runs ``--warmup`` untimed steps (the first steps
pay for page faults and lazy initialisation), then times ``--steps`` steps one by one. The
report gives the median step over all workers, images/s, the ratio minires / PyTorch, and each
worker's peak resident memory (``getrusage`` ``ru_maxrss``), whole and above the baseline after
the imports. The PyTorch model is the reference ResNet of the tests (``tests/support/torch_resnet.py``,
torchvision's layout; torchvision itself cannot be installed beside this torch).
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .harness import (FRAMEWORKS, alternate, blas_description, command_line, machine_lines, markdown_table,
                     median, argument_parser, peak_rss_mb, serve_as_worker, torch_description)

MODULE = "benchmarks.bench_train_step"   # run as python -m MODULE from the checkout's root

# name -> (image size, classes, default timed steps per worker: ~15 s of work on 2 cores)
MODELS = {
    "resnet18_cifar": (32, 10, 5),
    "resnet20": (32, 10, 20),
    "resnet18": (224, 1000, 2),
    "resnet50": (224, 1000, 1),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
TABLE_HEADER = ["model", "batch", "framework", "ms / step", "images / s", "time ratio",
                "peak RSS (MB)", "above imports (MB)", "memory ratio (peak / above)"]


# -- the workers ------------------------------------------------------------------------------------
def minires_step(config):
    """A minires training step on the saved weights.

    Returns ``(step, as_inputs, baseline MB, description)``: ``step(images, labels)`` trains on
    one batch and returns the loss; ``as_inputs`` turns NumPy arrays into the step's inputs.
    """
    from minires import models, nn, optim
    baseline = peak_rss_mb()
    model = getattr(models, config["model"])()
    model.load_state_dict(dict(np.load(config["weights"])))
    model.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step(images, labels):
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        return float(loss)

    return step, lambda images, labels: (images, labels), baseline, blas_description()


def torch_step(config):
    """The same step in PyTorch eager (the same four results as ``minires_step``)."""
    import torch
    import torch.nn.functional as F
    from tests.support import torch_resnet
    torch.set_num_threads(config["threads"])
    baseline = peak_rss_mb()
    model = getattr(torch_resnet, config["model"])()
    model.load_state_dict({name: torch.from_numpy(value) for name, value in np.load(config["weights"]).items()})
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step(images, labels):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    def as_tensors(images, labels):
        return torch.from_numpy(images), torch.from_numpy(labels)

    return step, as_tensors, baseline, torch_description(torch)


def worker(framework, config):
    """Warm up, time ``config["steps"]`` steps one by one, read the peak memory."""
    make_step = {"minires": minires_step, "torch": torch_step}[framework]
    step, as_inputs, baseline_mb, description = make_step(config)
    batch = np.load(config["data"])
    images, labels = as_inputs(batch["images"], batch["labels"])
    losses = [step(images, labels) for _ in range(config["warmup"])]
    seconds = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        losses.append(step(images, labels))
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "losses": losses, "baseline_mb": baseline_mb,
            "peak_mb": peak_rss_mb(), "description": description}


# -- the parent ------------------------------------------------------------------------------------
def save_inputs(model, batch_size, seed, folder):
    """Write the starting weights and the batch that both frameworks load: (weights, data) paths."""
    import minires
    from minires import models
    size, classes, _ = MODELS[model]
    minires.manual_seed(seed)
    weights = Path(folder) / "weights.npz"
    np.savez(weights, **getattr(models, model)().state_dict())
    rng = np.random.default_rng(seed)
    data = Path(folder) / "batch.npz"
    np.savez(data, images=rng.standard_normal((batch_size, 3, size, size), dtype=np.float32),
             labels=rng.integers(0, classes, batch_size, dtype=np.int64))
    return str(weights), str(data)


def run_benchmark(model="resnet18_cifar", batch_size=128, steps=None, repeats=3, warmup=2, threads=2,
                  seed=0):
    """Run the alternating workers; returns the summary that ``format_report`` prints."""
    steps = MODELS[model][2] if steps is None else steps
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as folder:
        weights, data = save_inputs(model, batch_size, seed, folder)
        config = dict(model=model, weights=weights, data=data, steps=steps, warmup=warmup, threads=threads)
        runs = alternate(MODULE, {framework: config for framework in FRAMEWORKS}, repeats,
                         describe=lambda _, run: f"{1000 * median(run['seconds']):.0f} ms/step, "
                                                 f"peak {run['peak_mb']:.0f} MB")
    return {"model": model, "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "warmup": warmup, "threads": threads, "runs": runs,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def _summary(runs):
    """Median step (over every timed step of every worker), spread of the workers, memory."""
    return {"step": median([s for run in runs for s in run["seconds"]]),
            "worker_medians": [median(run["seconds"]) for run in runs],
            "peak_mb": median([run["peak_mb"] for run in runs]),
            "above_mb": median([run["peak_mb"] - run["baseline_mb"] for run in runs]),
            "losses": runs[0]["losses"]}


def _ratio(value, reference):
    """``value / reference`` to two decimals; "n/a" when the reference is 0 (a tiny run allocates nothing)."""
    return f"{value / reference:.2f}" if reference else "n/a"


def format_report(result):
    """The Markdown report: the table, the loss check, the machine and the command."""
    summary = {framework: _summary(result["runs"][framework]) for framework in FRAMEWORKS}
    reference = summary["torch"]
    rows = []
    for framework, label in (("minires", "minires"), ("torch", "PyTorch eager")):
        s = summary[framework]
        rows.append([result["model"], str(result["batch_size"]), label, f"{1000 * s['step']:.0f}",
                     f"{result['batch_size'] / s['step']:.1f}", f"{s['step'] / reference['step']:.2f}",
                     f"{s['peak_mb']:.0f}", f"{s['above_mb']:.0f}",
                     f"{_ratio(s['peak_mb'], reference['peak_mb'])} / {_ratio(s['above_mb'], reference['above_mb'])}"])
    spread = ", ".join(f"{f} {1000 * min(s['worker_medians']):.0f}-{1000 * max(s['worker_medians']):.0f} ms"
                       for f, s in summary.items())
    losses = {f: s["losses"] for f, s in summary.items()}
    agree = np.allclose(losses["minires"], losses["torch"], rtol=1e-2, atol=1e-3)
    info = {f: result["runs"][f][0]["description"] for f in FRAMEWORKS}
    lines = [
        f"### Training step: {result['model']}, batch {result['batch_size']}, float32, "
        f"{result['threads']} threads", "",
        markdown_table(TABLE_HEADER, rows), "",
        f"Median of {result['repeats']} workers per framework x {result['steps']} timed steps, after "
        f"{result['warmup']} warm-up steps each, alternating minires / PyTorch; the workers' own medians "
        f"range {spread}. Ratios are minires / PyTorch. Memory: peak RSS of the worker process, and the "
        "same minus the peak after importing the framework.",
        f"Same weights and data: loss at the first step minires {losses['minires'][0]:.4f}, PyTorch "
        f"{losses['torch'][0]:.4f}; at step {len(losses['torch'])} minires {losses['minires'][-1]:.4f}, "
        f"PyTorch {losses['torch'][-1]:.4f} (all steps {'agree' if agree else '**DIFFER**'}).",
        "",
        *machine_lines(result["threads"], info, result["load_before"], result["load_after"]),
        f"- command: `{command_line(MODULE)}`",
    ]
    return "\n".join(lines)


def parse_args(argv):
    p = argument_parser(__doc__, warmup=2, warmup_help="untimed steps at the start of each worker")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet18_cifar")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per worker (default: per model, 5 for resnet18_cifar, 20 for resnet20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if serve_as_worker(argv, worker):
        return
    args = parse_args(argv)
    print(f"{args.model}, batch {args.batch_size}: alternating worker processes ...", file=sys.stderr)
    print(format_report(run_benchmark(args.model, args.batch_size, args.steps, args.repeats, args.warmup,
                                      args.threads, args.seed)))


if __name__ == "__main__":
    main()
