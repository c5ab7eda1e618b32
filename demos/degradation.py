"""The degradation problem (He et al. 2015, Fig. 6) at laptop scale: deeper plain nets train worse.

    python demos/degradation.py                  # --quick: about 12 minutes on a 2-core CPU
    python demos/degradation.py --steps 2000 --subset 20000 --depths 20 32 44 56   # longer

Trains plain-20 and plain-56, then ResNet-20 and ResNet-56 (option A shortcuts, as in the paper)
on CIFAR-10 with the same data, schedule and seed, and draws the paper's figure: two panels
(plain nets, ResNets), error in % against iterations, thin lines the training error (the running
error of the batches since the last point), bold lines the test error. The plain net with more
layers has the HIGHER training error -- not overfitting, an optimisation problem -- while the
ResNet with more layers does at least as well as the shallow one.

The paper's recipe, 64k iterations of 128 images (on a GPU with CuPy):

    python demos/degradation.py --paper --device cuda
    # the same as: --depths 20 32 44 56 --steps 64000 --batch-size 128 --lr 0.1 --subset 50000
    #              --test-size 10000 --eval-every 1000

(SGD with momentum 0.9 and weight decay 1e-4, the learning rate divided by 10 at 50% and 75% of
the steps -- the paper's 32k and 48k --, 4-pixel padded random crops and flips. The paper trains
on 45k images and keeps 5k for validation; it reports test errors of 8.75% for ResNet-20 and
6.97% for ResNet-56.) The quick default uses the same recipe on a subset for a few hundred steps,
with batches of 32 and a learning rate of 0.02 (with 0.05, ResNet-56 was still at 88% training
error after 300 steps, like plain-56).

Writes into --out: degradation.png (the figure) and degradation.json (the curves).
"""
import os

# One BLAS thread unless the user says otherwise. minires' GEMMs are small and most of its ops are
# single-threaded NumPy anyway; measured on this project's 2 cores (ResNet-56, batch 32), two threads
# were ~20% faster on an idle machine, but one thread was 2-2.5x faster while other jobs ran.
# Set before NumPy loads OpenBLAS, and only when run as a script (importing this changes nothing).
if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import math
import time
from pathlib import Path

from matplotlib.figure import Figure

import study_common  # the sibling module: python puts demos/ on sys.path
import minires
from minires import data, optim, train
from minires.backend import on_device, to_device

DEPTH_COLOURS = {20: "tab:orange", 32: "tab:cyan", 44: "tab:red", 56: "tab:blue", 110: "tab:green"}


PRESETS = {
    # about 12 minutes on a 2-core CPU (measured: README, "The degradation problem")
    "quick": {"depths": [20, 56], "steps": 300, "batch_size": 32, "lr": 0.02, "subset": 10000,
              "test_size": 500, "eval_every": 50},
    # He et al.'s CIFAR-10 recipe (for a GPU): 64k iterations of 128 images
    "paper": {"depths": [20, 32, 44, 56], "steps": 64000, "batch_size": 128, "lr": 0.1, "subset": 50000,
              "test_size": 10000, "eval_every": 1000},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__[__doc__.index("The paper's recipe"):__doc__.index("Writes into")])
    preset = p.add_mutually_exclusive_group()
    describe = study_common.describe_preset
    preset.add_argument("--quick", dest="preset", action="store_const", const="quick",
                        help="the laptop-scale run (the default): " + describe(PRESETS["quick"]))
    preset.add_argument("--paper", dest="preset", action="store_const", const="paper",
                        help="He et al.'s recipe, for a GPU: " + describe(PRESETS["paper"]))
    p.add_argument("--depths", type=int, nargs="+", help="depths 6n+2")
    p.add_argument("--steps", type=int, help="SGD steps per network")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="initial learning rate")
    p.add_argument("--subset", type=int, help="training images used")
    p.add_argument("--test-size", type=int, help="test images per evaluation")
    p.add_argument("--eval-every", type=int, help="steps between two points of the curves")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="(default: 1e-4)")
    p.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--out", default="runs/degradation", help="folder for the figure and the curves")
    p.add_argument("--no-progress", action="store_true", help="print less (for logs)")
    study_common.add_data_arguments(p)
    args = p.parse_args(argv)
    args.preset = args.preset or "quick"
    study_common.apply_preset(args, PRESETS[args.preset])
    if args.eval_every > args.steps:
        p.error(f"--eval-every ({args.eval_every}) is larger than --steps ({args.steps})")
    return args


def endless(loader):
    """The loader's batches, epoch after epoch (each epoch in a new order)."""
    while True:
        yield from loader


def train_and_measure(model, train_loader, test_loader, args, report):
    """``--steps`` SGD steps; every ``--eval-every`` steps a point (step, train error, test error) in %."""
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    schedule = optim.lr_scheduler.MultiStepLR(optimizer, [args.steps // 2, args.steps * 3 // 4], gamma=0.1)
    criterion = train.CrossEntropyLoss()
    points, wrong, seen = [], 0, 0
    model.train()
    for step, (images, labels) in enumerate(endless(train_loader), start=1):
        x, y = to_device(images, args.device), to_device(labels, args.device)
        logits = model(x)
        loss = float(criterion(logits, y))
        if not math.isfinite(loss):
            report(f"the loss became {loss} at step {step}: stopped")
            break
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        schedule.step()
        wrong += int((logits.argmax(axis=1) != y).sum())
        seen += len(labels)
        if step % args.eval_every == 0 or step == args.steps:
            test = train.evaluate(model, test_loader, device=args.device, progress=False)
            model.train()
            points.append({"step": step, "train_error": 100 * wrong / seen,
                           "test_error": 100 * (1 - float(test["accuracy"]))})
            wrong = seen = 0
            report(f"step {step:>6}/{args.steps}  train error {points[-1]['train_error']:5.1f}%  "
                   f"test error {points[-1]['test_error']:5.1f}%")
        if step == args.steps:
            break
    return points


def build_loaders(args):
    train_set, test_set, source = study_common.load_cifar(args, args.subset, args.test_size)
    augment = [] if args.no_augment else [data.RandomCrop(32, padding=4), data.RandomHorizontalFlip()]
    train_loader = data.DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True,
                                   transform=data.Compose([*augment, study_common.NORMALIZE]), seed=args.seed)
    test_loader = data.DataLoader(test_set, 250, transform=study_common.NORMALIZE)
    return train_loader, test_loader, source


def plot(runs, path, title):
    """The paper's Fig. 6: plain nets left, ResNets right; thin = training error, bold = test error."""
    figure = Figure(figsize=(11, 4.2))
    panels = dict(zip((False, True), figure.subplots(1, 2, sharey=True)))
    for run in runs:
        axes, colour = panels[run["residual"]], DEPTH_COLOURS.get(run["depth"], "tab:gray")
        steps = [p["step"] for p in run["points"]]
        axes.plot(steps, [p["train_error"] for p in run["points"]], color=colour, linewidth=0.9, linestyle="--")
        axes.plot(steps, [p["test_error"] for p in run["points"]], color=colour, linewidth=2.4, label=run["name"])
    for residual, axes in panels.items():
        axes.set(title="ResNets" if residual else "plain networks", xlabel="iterations")
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(title="bold: test, dashed: train", fontsize=9, title_fontsize=8)
    panels[False].set_ylabel("error (%)")
    figure.suptitle(title, fontsize=10)
    study_common.write_png(figure, path)


def summary(runs):
    lines = [f"{'network':<12}{'final train error':>19}{'final test error':>18}{'best test error':>17}{'minutes':>9}"]
    for run in runs:
        last = run["points"][-1] if run["points"] else {"train_error": math.nan, "test_error": math.nan}
        best = min((p["test_error"] for p in run["points"]), default=math.nan)
        lines.append(f"{run['name']:<12}{last['train_error']:>18.1f}%{last['test_error']:>17.1f}%{best:>16.1f}%"
                     f"{run['seconds'] / 60:>9.1f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    train_loader, test_loader, source = build_loaders(args)
    out = Path(args.out)
    title = (f"{source}: {len(train_loader.dataset)} training images, {args.steps} steps of {args.batch_size}, "
             f"{len(test_loader.dataset)} test images")
    print(title, flush=True)
    runs = []
    for residual in (False, True):
        for depth in args.depths:
            minires.manual_seed(args.seed)
            model = study_common.build_model(depth, residual).to(args.device)
            name = study_common.model_name(depth, residual)
            start = time.perf_counter()

            def report(message, name=name, start=start):
                if not args.no_progress or message.startswith("the loss"):
                    print(f"{name:<11} {message}  ({time.perf_counter() - start:.0f} s)", flush=True)

            train_loader.set_epoch(0)  # every network sees the same batches
            with on_device(args.device):  # CuPy computes on the current GPU only
                points = train_and_measure(model, train_loader, test_loader, args, report)
            runs.append({"name": name, "depth": depth, "residual": residual, "points": points,
                         "seconds": time.perf_counter() - start})
            study_common.save_json({"config": vars(args), "source": source, "runs": runs}, out / "degradation.json")
            plot(runs, out / "degradation.png", title)
    print(summary(runs))
    print(f"wrote {out / 'degradation.png'} and {out / 'degradation.json'}")
    return runs


if __name__ == "__main__":
    main()
