"""Identity mappings (He, Zhang, Ren, Sun 2016) at CPU scale: the paper's shortcut variants and
activation orderings, their gradient at initialisation and a short training run of each.

    python demos/identity_mappings.py --quick        # 4 variants, ResNet-20, 60 steps: ~1 minute of CPU
    python demos/identity_mappings.py                # all 13 variants, ResNet-32, 200 steps each: ~18 minutes
    python demos/identity_mappings.py --synthetic    # stand-in images, no CIFAR-10 needed

Every variant is a ``minires.models.PreActResNet`` of the same depth, built from the same seed:
the shortcut variants (constant scaling, gating, 1x1 convolution, dropout) on the original
post-activation units, as in the paper's Table 1, and the five activation orderings with the
identity shortcut, as in its Table 2 (projection shortcuts "B" where the shape changes). For each:

1. at initialisation, one forward and backward pass on a fixed batch of test images with
   ``minires.inspect.record_gradient_flow``: the norm of the gradient reaching each unit's input,
   ``||dL/dx_l||``, relative to the last unit's, and ``||gradient at the first conv|| / ||gradient at
   the classifier||``;
2. ``--steps`` SGD steps (momentum 0.9, weight decay 1e-4, the learning rate divided by 10 at 50%
   and 75% of the steps, random crops and flips) on the first ``--subset`` training images, with the
   training error of the batches and the error on the first ``--test-size`` test images every
   ``--eval-every`` steps (``demos/degradation.py``'s loop).

Each variant's numbers are saved as soon as it is done; run the same command again after a stop and
the variants already measured with the same settings are taken from the saved file.

Writes into --out: identity_mappings.png (the gradient per unit and the shortcut's share of it at
initialisation; the training error and the test error against the steps) and identity_mappings.json (all the numbers), and
prints a table beside the paper's ResNet-110 test errors.
"""
import os

# One BLAS thread unless the user says otherwise (see demos/degradation.py: on a loaded 2-core
# machine one thread was much faster). Set before NumPy loads OpenBLAS, only when run as a script.
if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import time
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

import degradation  # the sibling demo, for its training loop and loaders
import study_common  # the sibling module: python puts demos/ on sys.path
import minires
from minires.backend import to_device
from minires.inspect import record_gradient_flow
from minires.models import PreActResNet

# name: (PreActResNet options, the paper's ResNet-110 test error on CIFAR-10 in %, Tables 1 and 2;
# "fail": the paper's word for a run that does not train to a useful error)
VARIANTS = {
    "original": ({"order": "original"}, "6.61"),
    "scaling 0.5 shortcut": ({"order": "original", "shortcut_scale": 0.5}, "fail"),
    "scaling 0.5 both": ({"order": "original", "shortcut_scale": 0.5, "branch_scale": 0.5}, "12.35"),
    "exclusive gating b_g=0": ({"order": "original", "gating": "exclusive", "gate_bias": 0.0}, "fail"),
    "exclusive gating b_g=-6": ({"order": "original", "gating": "exclusive", "gate_bias": -6.0}, "8.70"),
    "shortcut-only gating b_g=0": ({"order": "original", "gating": "shortcut_only", "gate_bias": 0.0}, "12.86"),
    "shortcut-only gating b_g=-6": ({"order": "original", "gating": "shortcut_only", "gate_bias": -6.0}, "6.91"),
    "1x1 conv shortcut": ({"order": "original", "shortcut": "conv1x1"}, "12.22"),
    "dropout shortcut": ({"order": "original", "shortcut": "dropout", "dropout": 0.5}, "fail"),
    "BN after addition": ({"order": "bn_after_add"}, "8.17"),
    "ReLU before addition": ({"order": "relu_before_add"}, "7.84"),
    "ReLU-only pre-activation": ({"order": "relu_preact"}, "6.71"),
    "full pre-activation": ({"order": "full_preact"}, "6.37"),
}

PRESETS = {
    # under 5 minutes on 2 cores
    "quick": {"variants": ["original", "scaling 0.5 shortcut", "dropout shortcut", "full pre-activation"],
              "depth": 20, "steps": 60, "batch_size": 32, "lr": 0.02, "subset": 2000, "test_size": 250,
              "eval_every": 20},
    # every variant at a depth deeper than 20, a fraction of an epoch each
    "full": {"variants": list(VARIANTS), "depth": 32, "steps": 200, "batch_size": 32, "lr": 0.02, "subset": 10000,
             "test_size": 500, "eval_every": 50},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", default="full",
                   help="the short run: four variants, ResNet-20, 60 steps of 32 on 2,000 images")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="NAME",
                   help="variants to run (default: all; quick: four); names: " + "; ".join(VARIANTS))
    p.add_argument("--depth", type=int, help="depth 6n+2 of every net")
    p.add_argument("--steps", type=int, help="SGD steps per variant (0: gradient flow at initialisation only)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="initial learning rate")
    p.add_argument("--subset", type=int, help="training images used")
    p.add_argument("--test-size", type=int, help="test images per evaluation")
    p.add_argument("--eval-every", type=int, help="steps between two points of the curves")
    p.add_argument("--probe", type=int, default=32, help="test images in the gradient-flow batch (default: 32)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="(default: 1e-4)")
    p.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--out", default="runs/identity_mappings", help="folder for the figure and the numbers")
    study_common.add_data_arguments(p)
    args = p.parse_args(argv)
    for name, value in PRESETS[args.preset].items():  # flags given explicitly win over the preset
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps and args.eval_every > args.steps:
        p.error(f"--eval-every ({args.eval_every}) is larger than --steps ({args.steps})")
    return args


def gradient_at_initialisation(model, probe):
    """Per unit, output first: ``||dL/dx_l|| / ||dL/dx_L||`` and the shortcut's share of the gradient
    reaching the unit, ``||shortcut part|| / (||shortcut part|| + ||branch part||)``; and
    ``||dL/d(first conv's output)|| / ||dL/d(logits)||``."""
    flow = record_gradient_flow(model, *probe)
    blocks = list(reversed(flow.blocks))
    layers = {stats.name: stats for stats in flow.layers}
    return {"loss": flow.loss,
            "unit_grads": [b.input_grad_norm / blocks[0].input_grad_norm for b in blocks],
            "shortcut_shares": [b.shortcut_norm / (b.shortcut_norm + b.branch_norm) for b in blocks],
            "in_out": layers["conv1"].grad_norm / layers["fc"].grad_norm}


def run_variant(name, train_loader, test_loader, probe, args):
    options, paper = VARIANTS[name]
    minires.manual_seed(args.seed)
    model = PreActResNet(args.depth, downsample="B", **options).to(args.device)
    start = time.perf_counter()
    row = {"name": name, "options": options, "paper_resnet110_error": paper,
           "init": gradient_at_initialisation(model, probe), "points": []}

    def report(message):
        print(f"  {name:<28} {message}  ({time.perf_counter() - start:.0f} s)", flush=True)

    if args.steps:
        train_loader.set_epoch(0)  # every variant sees the same batches
        row["points"] = degradation.train_and_measure(model, train_loader, test_loader, args, report)
    row["seconds"] = time.perf_counter() - start
    return row


# -- the figure and the table ----------------------------------------------------------------------
def _style(index, name):
    ordering = name in ("BN after addition", "ReLU before addition", "ReLU-only pre-activation",
                        "full pre-activation")
    return {"color": colormaps["tab20"](index % 20), "linestyle": "--" if ordering else "-", "label": name,
            "linewidth": 2.2 if name in ("original", "full pre-activation") else 1.3}


def plot(rows, path, title):
    figure = Figure(figsize=(15, 9), layout="constrained")
    (grads, shares), (train_axes, test_axes) = figure.subplots(2, 2)
    for index, row in enumerate(rows):
        style = _style(index, row["name"])
        grads.semilogy(range(len(row["init"]["unit_grads"])), row["init"]["unit_grads"], **style)
        shares.plot(range(len(row["init"]["shortcut_shares"])), row["init"]["shortcut_shares"], **style)
        steps = [p["step"] for p in row["points"]]
        train_axes.plot(steps, [p["train_error"] for p in row["points"]], **style)
        test_axes.plot(steps, [p["test_error"] for p in row["points"]], **style)
    grads.set(title="gradient reaching each unit, at initialisation", ylabel="||dL/dx_l|| / ||dL/dx_L||",
              xlabel="units below the output (0 = the last unit)")
    shares.set(title="the shortcut's share of it, at initialisation", ylim=(-0.03, 1.03),
               ylabel="||shortcut part|| / (||shortcut|| + ||branch||)", xlabel="units below the output")
    train_axes.set(title="training error (the batches since the point before)", xlabel="SGD steps", ylabel="error (%)")
    test_axes.set(title="test error", xlabel="SGD steps", ylabel="error (%)")
    for axes in (grads, shares, train_axes, test_axes):
        axes.grid(alpha=0.3, which="both")
    figure.legend(*grads.get_legend_handles_labels(), loc="outside right upper", fontsize=8, title_fontsize=8,
                  title="solid: shortcut variants\n(original units)\ndashed: orderings")
    figure.suptitle(title, fontsize=10)
    study_common.write_png(figure, path, dpi=80)


def table(rows):
    lines = [f"{'variant':<30}{'paper (ResNet-110)':>19}{'in/out':>9}{'shortcut':>10}{'train error':>13}"
             f"{'test error':>12}{'minutes':>9}"]
    for row in rows:
        last = row["points"][-1] if row["points"] else {"train_error": math.nan, "test_error": math.nan}
        paper = row["paper_resnet110_error"] + ("" if row["paper_resnet110_error"] == "fail" else "%")
        share = sum(row["init"]["shortcut_shares"]) / len(row["init"]["shortcut_shares"])
        lines.append(f"{row['name']:<30}{paper:>19}{row['init']['in_out']:>9.3g}{share:>10.2f}"
                     f"{last['train_error']:>12.1f}%{last['test_error']:>11.1f}%{row['seconds'] / 60:>9.1f}")
    lines.append("at initialisation -- in/out: ||gradient at the first conv|| / ||gradient at the classifier||; "
                 "shortcut: the shortcut's mean share of the gradient reaching a unit.\nAfter training -- the "
                 "last point of the run: training error of the batches since the point before, test error.")
    return "\n".join(lines)


def finished_rows(path, args):
    """The variants measured by an earlier run into the same ``--out`` with the same settings (all but
    ``--variants``): a stopped run goes on where it left off. Delete the file to measure them again."""
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    settings = {name: value for name, value in vars(args).items() if name not in ("variants", "out")}
    if {name: saved["config"].get(name) for name in settings} != settings:
        return {}
    return {row["name"]: row for row in saved["rows"]}


def main(argv=None):
    args = parse_args(argv)
    train_loader, test_loader, source = degradation.build_loaders(args)
    probe_set = test_loader.dataset
    probe = (to_device(study_common.NORMALIZE(probe_set.data[:args.probe], None), args.device),
             to_device(probe_set.targets[:args.probe], args.device))
    title = (f"{source}: ResNet-{args.depth} variants, {args.steps} steps of {args.batch_size} images "
             f"(lr {args.lr}) on {len(train_loader.dataset)} training images, {len(probe_set)} test images")
    print(title, flush=True)
    out, rows = Path(args.out), []
    finished = finished_rows(out / "identity_mappings.json", args)
    for name in args.variants:
        if name in finished:
            print(f"  {name:<28} measured by an earlier run with the same settings: {out / 'identity_mappings.json'}")
        rows.append(finished.get(name) or run_variant(name, train_loader, test_loader, probe, args))
        study_common.save_json({"config": vars(args), "source": source, "rows": rows}, out / "identity_mappings.json")
        plot(rows, out / "identity_mappings.png", title)
    print(table(rows))
    print(f"wrote {out / 'identity_mappings.png'} and {out / 'identity_mappings.json'}")
    return rows


if __name__ == "__main__":
    main()
