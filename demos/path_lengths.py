"""How much gradient the paths of each length carry through a trained ResNet (Veit, Wilber,
Belongie 2016, Sec. 5, Fig. 6).

    python demos/path_lengths.py --quick        # ResNet-20 (9 blocks): 1.5 min of CPU
    python demos/path_lengths.py                # ResNet-20 and ResNet-56 (27 blocks)
    python demos/path_lengths.py --quick --synthetic   # stand-in images, no CIFAR-10 needed

Uses the trained weights that ship with minires. Unrolled, n residual blocks are 2^n paths; a
path of length k goes through k branches and n - k shortcuts, and C(n, k) paths have length k.
For each k: forward a batch of test images, then backward with k sampled blocks routed through
their branch only and the others through their shortcut only (``block.route``), which gives one
path's share of the input gradient; record its norm; repeat over batches and draws
(``minires.study.paths``). Fig. 6 of the paper, for 54 blocks: (a) how many paths have each
length, (b) the gradient of one path of each length, falling fast with its length, (c) their
product, the total gradient per length: paths of 5-17 blocks (0.45% of all paths) carry almost
all of it.

Writes into --out: path_lengths.png (the three panels) and path_lengths.json, and prints the table.
"""
import os

# One BLAS thread unless the user says otherwise (see skip_connections.py: faster on a busy machine).
# Set before NumPy loads OpenBLAS, and only when run as a script (importing this changes nothing).
if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse

import numpy as np
from matplotlib.figure import Figure

import study_common  # the sibling module: python puts demos/ on sys.path
from minires.models.weights import SHIPPED, normalise
from minires.study.paths import path_gradients

PRESETS = {
    "quick": {"nets": ["resnet20"], "batches": 4, "batch_size": 32, "samples": 12},
    "full": {"nets": ["resnet20", "resnet56"], "batches": 4, "batch_size": 64, "samples": 10},
}
COLOURS = {"resnet20": "tab:blue", "resnet56": "tab:green"}
SHARE = 0.9  # the table names the lengths that carry this fraction of the total gradient


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", choices=[name for name in SHIPPED if name.startswith("resnet")],
                   help="shipped ResNets")
    p.add_argument("--batches", type=int, help="batches of test images")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--samples", type=int, help="paths drawn per length and batch")
    p.add_argument("--seed", type=int, default=0, help="of the random draws (default: 0)")
    p.add_argument("--out", default="runs/path_lengths",
                   help="folder for path_lengths.png and path_lengths.json (default: runs/path_lengths)")
    return study_common.parse_with_presets(p, PRESETS, argv)


def first_batches(test_set, batches, batch_size):
    """The first ``batches * batch_size`` test images, normalised, as ``(x, y)`` batches."""
    return [(normalise(test_set.data[start:start + batch_size]), test_set.targets[start:start + batch_size])
            for start in range(0, batches * batch_size, batch_size)]


def measure(model, batches, args):
    measured = path_gradients(model, batches, samples=args.samples, seed=args.seed)
    return {**measured.as_dict(), "carrying": measured.carrying(SHARE)}


def plot(results, path, title):
    """Fig. 6 of the paper: (a) paths per length, (b) gradient of one path, (c) total per length."""
    figure = Figure(figsize=(15, 4.2))
    counts, single, total = figure.subplots(1, 3, gridspec_kw={"wspace": 0.3})
    for result in results:
        colour, label, lengths = COLOURS.get(result["net"], "tab:gray"), result["name"], result["lengths"]
        counts.plot(lengths, np.array(result["paths"]) / 2 ** result["blocks"], "o-", color=colour,
                    markersize=3, label=label)
        single.semilogy(lengths, result["mean_norm"], "o-", color=colour, markersize=3, label=label)
        spread = [np.std(result["norms"][str(k)]) / np.sqrt(len(result["norms"][str(k)])) for k in lengths]
        single.fill_between(lengths, np.subtract(result["mean_norm"], spread), np.add(result["mean_norm"], spread),
                            color=colour, alpha=0.2)
        total.plot(lengths, np.array(result["total"]) / sum(result["total"]), "o-", color=colour,
                   markersize=3, label=label)
    counts.set(title="(a) distribution of path lengths", xlabel="path length (blocks)", ylabel="share of all paths")
    single.set(title="(b) gradient of one path (band: standard error)", xlabel="path length (blocks)",
               ylabel="mean ||dL/dx|| of a path")
    total.set(title="(c) total gradient per length: C(n, k) x (b)", xlabel="path length (blocks)",
              ylabel="share of the summed total")
    study_common.save_titled_figure(figure, title, path)


def table(result):
    total = sum(result["total"])
    lines = [f"{result['name']}: {result['blocks']} residual blocks, 2^{result['blocks']} = "
             f"{2 ** result['blocks']:,} paths; ||dL/dx|| of the whole network {np.mean(result['full_norms']):.3g}",
             f"{'length':>6}{'paths':>22}{'share of paths':>16}{'one path':>12}{'total':>12}{'share':>8}"]
    for k, count, mean, size in zip(result["lengths"], result["paths"], result["mean_norm"], result["total"]):
        lines.append(f"{k:>6}{count:>22,}{count / 2 ** result['blocks']:>16.3%}{mean:>12.3g}{size:>12.3g}"
                     f"{size / total:>8.1%}")
    low, high, share = result["carrying"]
    lines.append(f"paths of {low}-{high} blocks ({share:.2%} of all paths) carry {SHARE:.0%} of the total gradient")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    _, test_set, source = study_common.load_cifar(args, 1, args.batches * args.batch_size)  # training split unused
    batches = first_batches(test_set, args.batches, args.batch_size)
    title = (f"{source}: {args.batches} batches of {args.batch_size} test images, up to {args.samples} paths "
             "per length and batch")
    print(title, flush=True)
    results = []
    for result in study_common.measure_trained(args.nets, lambda model: measure(model, batches, args)):
        results.append(result)
        print(table(result) + f"\n({result['seconds']:.0f} s)\n", flush=True)
    study_common.write_results(args.out, "path_lengths", {"config": vars(args), "source": source, "results": results},
                               lambda path: plot(results, path, title))
    return results


if __name__ == "__main__":
    main()
