"""Delete blocks of a trained network at test time (Veit, Wilber, Belongie 2016, Sec. 4).

    python demos/lesion.py --quick        # ResNet-20 and plain-20 on 1,000 test images: 1.5 min of CPU
    python demos/lesion.py                # ResNet-20/56 and plain-20/56 on 2,000 test images, 4 draws per k
    python demos/lesion.py --quick --synthetic   # stand-in images, no CIFAR-10 needed (errors meaningless)

Uses the trained weights that ship with minires (``models.resnet20(weights="cifar10")`` and the
others). For each network, in eval mode: the test error intact; with each block deleted alone
(its branch dropped: ``y = relu(S(x))``; a plain block only where its shape allows, its output
then its input); and with k blocks deleted at once, k = 1, 2, ... all of them, several random
draws per k (``minires.study.lesion``). Veit et al. found, for ResNet-110 on CIFAR-10, that deleting
any single block other than a downsampling one barely changes the error while deleting a layer
of a VGG network destroys it, and that the error grows smoothly with the number of blocks
deleted, like an ensemble's as members are taken away.

Writes into --out: lesion.png (left: one block deleted; right: k blocks deleted) and
lesion.json (every error), and prints the table.
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
from minires.models.weights import SHIPPED
from minires.study.lesion import lesion_study

PRESETS = {
    "quick": {"nets": ["resnet20", "plain20"], "test_size": 1000, "draws": 3},
    "full": {"nets": ["resnet20", "plain20", "resnet56", "plain56"], "test_size": 2000, "draws": 4},
}
COLOURS = {"resnet20": "tab:blue", "plain20": "tab:orange", "resnet56": "tab:green", "plain56": "tab:red"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", choices=SHIPPED,
                   help="shipped networks")
    p.add_argument("--test-size", type=int, help="first N CIFAR-10 test images")
    p.add_argument("--draws", type=int, help="random sets of k blocks per k")
    p.add_argument("--seed", type=int, default=0, help="of the random draws (default: 0)")
    p.add_argument("--out", default="runs/lesion", help="folder for lesion.png and lesion.json (default: runs/lesion)")
    return study_common.parse_with_presets(p, PRESETS, argv)


def plot(results, path, title):
    """Left: the error with each block deleted alone; right: the mean error with k blocks deleted."""
    figure = Figure(figsize=(12, 4.4))
    single, several = figure.subplots(1, 2, gridspec_kw={"wspace": 0.2})
    for result in results:
        colour = COLOURS.get(result["net"], "tab:gray")
        rows = result["single"]
        single.plot([r["index"] + 1 for r in rows], [r["error"] for r in rows], "o-", color=colour,
                    markersize=4, label=result["name"])
        down = [r for r in rows if r["downsampling"]]
        single.plot([r["index"] + 1 for r in down], [r["error"] for r in down], "s", color=colour,
                    markersize=9, markerfacecolor="none")
        single.axhline(result["intact"], color=colour, linestyle=":", linewidth=1)
        ks = sorted(result["random"])
        errors = [result["random"][k] for k in ks]
        several.plot(ks, [np.mean(e) for e in errors], "o-", color=colour, markersize=4, label=result["name"])
        several.fill_between(ks, [min(e) for e in errors], [max(e) for e in errors], color=colour, alpha=0.15)
    single.set(xlabel="block deleted (1 = nearest the input)", ylabel="test error (%)")
    single.set_title("one block deleted\n(dotted: intact network; squares: downsampling blocks)", fontsize=10)
    several.set(xlabel="number of blocks deleted", ylabel="test error (%)")
    several.set_title("k random blocks deleted\n(mean; band: lowest to highest of the draws)", fontsize=10)
    for axes in (single, several):
        axes.axhline(90, color="gray", linewidth=0.8)  # chance: 10 classes
        axes.set_ylim(0, 100)
    study_common.save_titled_figure(figure, title, path)


def table(results):
    """Errors per deleted block (one column per network), then per number of blocks deleted."""
    names = [r["name"] for r in results]
    head = f"{'':<18}" + "".join(f"{name:>11}" for name in names)
    by_block = [{row["block"]: row for row in r["single"]} for r in results]
    blocks = list(dict.fromkeys(block for rows in by_block for block in rows))
    lines = ["test error (%), intact and with one block deleted", head,
             f"{'intact':<18}" + "".join(f"{r['intact']:>11.1f}" for r in results)]
    for block in blocks:
        down = any(rows[block]["downsampling"] for rows in by_block if block in rows)
        lines.append(f"{block + (' (down)' if down else ''):<18}"
                     + "".join(f"{rows[block]['error']:>11.1f}" if block in rows else f"{'':>11}"
                               for rows in by_block))
    lines += ["", "k blocks deleted (mean over the draws)", head]
    for k in sorted({k for r in results for k in r["random"]}):
        lines.append(f"{k:<18}" + "".join(f"{np.mean(r['random'][k]):>11.1f}" if k in r["random"] else f"{'':>11}"
                                          for r in results))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    _, test_set, source = study_common.load_cifar(args, 1, args.test_size)  # the training split is not used
    title = f"{source}: {len(test_set):,} test images, {args.draws} draws per k"
    print(title, flush=True)
    results = []
    for result in study_common.measure_trained(args.nets, lambda model: lesion_study(
            model, test_set.data, test_set.targets, draws=args.draws, seed=args.seed)):
        results.append(result)
        print(f"{result['name']}: intact {result['intact']:.1f}%, {len(result['single'])} blocks deletable "
              f"({result['seconds']:.0f} s)", flush=True)
    print(table(results))
    study_common.write_results(args.out, "lesion", {"config": vars(args), "source": source, "results": results},
                               lambda path: plot(results, path, title))
    return results


if __name__ == "__main__":
    main()
