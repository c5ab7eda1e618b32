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

Several processes, ``--ranks K`` (the ``[mpi]`` extra):

    python -m benchmarks.bench_train_step --model resnet20 --batch-size 128 --ranks 2

adds a third worker that trains the same global batch in K processes started by ``mpiexec``, each
with ``threads / K`` BLAS threads and its shard of the batch, as the demo's ``--processes K`` does:
synchronised batch norm (``--no-sync-bn``: each process's own), the loss summed over the
processes, the gradients all-reduced. Its row gives the images/s of the global batch and the peak
memory of its largest process; the line below the table its speed against one process, the share
of rank 0's step spent in collectives (the all-reduces, waiting for the slower process included)
and every process's peak memory.
"""
import importlib.util
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
    """A minires training step on the saved weights, as ``minires.train`` takes it.

    Returns ``(step, as_inputs, baseline MB, description, group)``: ``step(images, labels)`` trains
    on one batch and returns the loss; ``as_inputs`` turns NumPy arrays into the step's inputs;
    ``group`` is the process group. In one process the distributed calls do nothing; in K (under
    mpiexec) each process takes its shard of the batch, and the step is the data-parallel one.
    """
    from minires import distributed, models, nn, optim
    baseline = peak_rss_mb()
    group = distributed.get_group()
    model = getattr(models, config["model"])()
    model.load_state_dict(dict(np.load(config["weights"])))
    if config.get("sync_bn"):
        nn.convert_sync_batchnorm(model)
    model.train()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step(images, labels):
        loss = criterion(model(images), labels)
        loss_sum, count = distributed.sum_over_processes(float(loss) * len(labels), len(labels))
        optimizer.zero_grad()
        dlogits = criterion.backward()
        if count != len(labels):  # a shard: the gradient of the global batch's mean loss
            dlogits *= len(labels) / count
        model.backward(dlogits)
        distributed.allreduce_gradients(model)
        optimizer.step()
        return loss_sum / count

    def this_shard(images, labels):
        return tuple(np.array_split(array, group.world_size)[group.rank] for array in (images, labels))

    return step, this_shard, baseline, blas_description(), group


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

    return step, as_tensors, baseline, torch_description(torch), None


def worker(framework, config):
    """Warm up, time ``config["steps"]`` steps one by one, read the peak memory.

    Of K processes, rank 0 returns the result (its step times, every rank's memory and share of
    time in collectives); the others return None.
    """
    make_step = {"minires": minires_step, "minires-ranks": minires_step, "torch": torch_step}[framework]
    step, as_inputs, baseline_mb, description, group = make_step(config)
    batch = np.load(config["data"])
    images, labels = as_inputs(batch["images"], batch["labels"])
    losses = [step(images, labels) for _ in range(config["warmup"])]
    communicating = group.seconds_communicating if group else 0.0
    seconds = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        losses.append(step(images, labels))
        seconds.append(time.perf_counter() - start)
    result = {"seconds": seconds, "losses": losses, "baseline_mb": baseline_mb,
              "peak_mb": peak_rss_mb(), "description": description}
    if group is None or group.world_size == 1:
        return result
    share = (group.seconds_communicating - communicating) / sum(seconds)
    ranks = group.comm.gather({"shard": len(labels), "peak_mb": result["peak_mb"], "baseline_mb": baseline_mb,
                               "communication_share": share}, root=0)
    return {**result, "ranks": ranks} if group.rank == 0 else None


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


def ranks_config(config, ranks, sync_bn):
    """The worker config of K processes under mpiexec, ``threads / K`` BLAS threads each."""
    from minires.distributed import INSTALL_HINT, mpiexec_path
    mpiexec = mpiexec_path()
    if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
        raise RuntimeError(f"--ranks {ranks} needs mpi4py and mpiexec: {INSTALL_HINT}")
    return {**config, "threads": max(1, config["threads"] // ranks), "ranks": ranks, "sync_bn": sync_bn,
            "launcher": [mpiexec, "-n", str(ranks)]}


def run_benchmark(model="resnet18_cifar", batch_size=128, steps=None, repeats=3, warmup=2, threads=2,
                  seed=0, ranks=1, sync_bn=True):
    """Run the alternating workers; returns the summary that ``format_report`` prints."""
    steps = MODELS[model][2] if steps is None else steps
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as folder:
        weights, data = save_inputs(model, batch_size, seed, folder)
        config = dict(model=model, weights=weights, data=data, steps=steps, warmup=warmup, threads=threads)
        configs = {framework: config for framework in FRAMEWORKS}
        if ranks > 1:
            configs["minires-ranks"] = ranks_config(config, ranks, sync_bn)
        runs = alternate(MODULE, configs, repeats,
                         describe=lambda _, run: f"{1000 * median(run['seconds']):.0f} ms/step, "
                                                 f"peak {run['peak_mb']:.0f} MB")
    return {"model": model, "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "warmup": warmup, "threads": threads, "runs": runs, "ranks": ranks, "sync_bn": sync_bn,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def _summary(runs):
    """Median step (over every timed step of every worker), spread of the workers, memory (of the
    largest process, for a worker of several)."""
    processes = [run.get("ranks", [run]) for run in runs]
    return {"step": median([s for run in runs for s in run["seconds"]]),
            "worker_medians": [median(run["seconds"]) for run in runs],
            "peak_mb": median([max(p["peak_mb"] for p in worker) for worker in processes]),
            "above_mb": median([max(p["peak_mb"] - p["baseline_mb"] for p in worker) for worker in processes]),
            "losses": runs[0]["losses"]}


def _ranks_line(result, summary):
    """What the table cannot say about the worker of several processes."""
    runs, ranks = result["runs"]["minires-ranks"], result["ranks"]
    processes = runs[0]["ranks"]
    share = median([run["ranks"][0]["communication_share"] for run in runs])
    memory = " / ".join(f"{median([run['ranks'][r]['peak_mb'] for run in runs]):.0f}" for r in range(ranks))
    threads = max(1, result["threads"] // ranks)
    norm = "synchronised" if result["sync_bn"] else "per-process"
    return (f"{ranks} processes x {threads} BLAS thread{'s' if threads > 1 else ''} (mpiexec, {norm} batch norm, "
            f"shards of {'/'.join(str(p['shard']) for p in processes)} images): "
            f"{summary['minires']['step'] / summary['minires-ranks']['step']:.2f}x the images/s of one process with "
            f"{result['threads']} threads; collectives (all-reduces, waiting for the slower process included) "
            f"{share:.0%} of rank 0's step; peak RSS per process {memory} MB.")


def _ratio(value, reference):
    """``value / reference`` to two decimals; "n/a" when the reference is 0 (a tiny run allocates nothing)."""
    return f"{value / reference:.2f}" if reference else "n/a"


def format_report(result):
    """The Markdown report: the table, the loss check, the machine and the command."""
    summary = {framework: _summary(runs) for framework, runs in result["runs"].items()}
    reference = summary["torch"]
    rows = []
    labels = {"minires": "minires", "torch": "PyTorch eager", "minires-ranks": f"minires, {result['ranks']} processes"}
    for framework in result["runs"]:
        label, s = labels[framework], summary[framework]
        rows.append([result["model"], str(result["batch_size"]), label, f"{1000 * s['step']:.0f}",
                     f"{result['batch_size'] / s['step']:.1f}", f"{s['step'] / reference['step']:.2f}",
                     f"{s['peak_mb']:.0f}", f"{s['above_mb']:.0f}",
                     f"{_ratio(s['peak_mb'], reference['peak_mb'])} / {_ratio(s['above_mb'], reference['above_mb'])}"])
    spread = ", ".join(f"{f} {1000 * min(s['worker_medians']):.0f}-{1000 * max(s['worker_medians']):.0f} ms"
                       for f, s in summary.items())
    losses = {f: s["losses"] for f, s in summary.items()}
    compared = [losses[f] for f in losses if f != "minires-ranks" or result["sync_bn"]]  # per-process BN differs
    agree = all(np.allclose(l, losses["torch"], rtol=1e-2, atol=1e-3) for l in compared)
    info = {f: result["runs"][f][0]["description"] for f in FRAMEWORKS}
    lines = [
        f"### Training step: {result['model']}, batch {result['batch_size']}, float32, "
        f"{result['threads']} threads", "",
        markdown_table(TABLE_HEADER, rows), "",
        *([_ranks_line(result, summary), ""] if "minires-ranks" in summary else []),
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
    p.add_argument("--ranks", type=int, default=1,
                   help="also train the batch in this many processes under mpiexec, threads / ranks each")
    p.add_argument("--no-sync-bn", action="store_true", help="with --ranks: each process's own batch norm")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if serve_as_worker(argv, worker):
        return
    args = parse_args(argv)
    print(f"{args.model}, batch {args.batch_size}: alternating worker processes ...", file=sys.stderr)
    print(format_report(run_benchmark(args.model, args.batch_size, args.steps, args.repeats, args.warmup,
                                      args.threads, args.seed, args.ranks, not args.no_sync_bn)))


if __name__ == "__main__":
    main()
