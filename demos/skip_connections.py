"""Skip connections and the gradient: plain nets next to ResNets, at initialisation and after training.

    python demos/skip_connections.py                            # ResNet-20/56/110 and plain twins
    python demos/skip_connections.py --depths 20 56 --steps 60  # fewer nets, longer training
    python demos/skip_connections.py --synthetic                # stand-in images, no CIFAR-10 needed

Needs CIFAR-10 in ``--data-dir`` (default ``$MINIRES_DATA``; ``--download`` fetches it) unless
``--synthetic`` is given. For each network, one forward and backward pass on a fixed batch of
test images with ``minires.inspect.record_gradient_flow`` listening, at initialisation; then
``--steps`` SGD steps on CIFAR-10 training images; then the same measurement again. Writes into
``--out``:

  gradient_per_layer.png   ||dL/d(output)|| of every conv and linear layer, from the output
                           (left) to the input (right): the gradient on its way back, log scale;
                           one panel per depth and stage, plain and ResNet side by side
  shortcut_share.png       for each residual block of the ResNets, its shortcut share
                           ||S'(x)^T g|| / (||S'(x)^T g|| + ||F'(x)^T g||) (minires.inspect);
                           plain nets have no shortcut and are not drawn

and prints a table. In a plain net the gradient passes through every layer's Jacobian, and its
norm changes geometrically with depth (by orders of magnitude over 56 or 110 layers); in a
ResNet each block adds the shortcut's copy of the incoming gradient to the branch's, and the norm
changes slowly. The digits after training differ from CPU to CPU (BLAS kernels differ, and a deep
plain net is chaotic); the orders of magnitude and which net is which do not.
"""
import os

# One BLAS thread unless the user says otherwise. minires' GEMMs are small and most of its ops are
# single-threaded NumPy anyway; measured on this project's 2 cores (ResNet-56, batch 32), two threads
# were ~20% faster on an idle machine, but one thread was 2-2.5x faster while other jobs ran.
# Set before NumPy loads OpenBLAS, and only when run as a script (importing this changes nothing).
if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import textwrap
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import study_common  # the sibling module: python puts demos/ on sys.path
import minires
from minires import data, optim, train
from minires.backend import on_device, to_device
from minires.inspect import record_gradient_flow
from minires.io import atomic_write

WEIGHTED_LAYERS = ("Conv2d", "Linear")
DEPTH_COLOURS = {20: "tab:blue", 32: "tab:purple", 44: "tab:brown", 56: "tab:orange", 110: "tab:green"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110], help="depths 6n+2")
    p.add_argument("--steps", type=int, default=10, help="SGD steps of the short training (0: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--probe", type=int, default=32, help="test images in the measured batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (CuPy)")
    p.add_argument("--out", default="runs/skip_connections", help="folder for the PNGs")
    study_common.add_data_arguments(p)
    return p.parse_args(argv)


def measure(model, x, y):
    """Loss, per-layer gradient norms (output first), per-block shortcut shares (output first) and
    which blocks open a stage (their shortcut is not the identity)."""
    flow = record_gradient_flow(model, x, y)
    layers = [s for s in flow.layers if s.kind in WEIGHTED_LAYERS and "downsample" not in s.name]
    blocks = list(reversed(flow.blocks))
    return {"loss": flow.loss,
            "layer_grads": [s.grad_norm for s in reversed(layers)],
            "shares": [b.shortcut_share for b in blocks],
            "stage_entries": [b.shortcut not in ("identity", "none") for b in blocks]}


def train_briefly(model, train_set, args):
    """``--steps`` steps of SGD with momentum (one pass over ``train_set``); returns their mean loss
    (NaN if the loss diverged)."""
    loader = data.DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True,
                             transform=study_common.NORMALIZE, seed=args.seed)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    try:
        result = train.train_one_epoch(model, loader, train.CrossEntropyLoss(), optimizer,
                                       device=args.device, progress=False)
    except train.NonFiniteError:
        return float("nan")
    return result["loss"]


def run(depth, residual, probe, train_set, args):
    minires.manual_seed(args.seed)
    model = study_common.build_model(depth, residual).to(args.device)
    start = time.perf_counter()
    row = {"name": study_common.model_name(depth, residual), "depth": depth, "residual": residual,
           "init": measure(model, *probe)}
    if args.steps:
        row["train_loss"] = train_briefly(model, train_set, args)
        row["trained"] = measure(model, *probe)
    row["seconds"] = time.perf_counter() - start
    return row


# -- pictures ------------------------------------------------------------------------------------
RESNET_LABEL = ("ResNet (solid). Its zigzag: going back, conv2 and conv1 of each block alternate. conv1 reads the "
                "residual stream, which grows block by block; the batch norm after it divides the gradient by that "
                "larger spread, so the gradient at conv1's output lies below the one at conv2's.")


def _stages(steps):
    return [("init", "at initialisation")] + ([("trained", f"after {steps} SGD steps")] if steps else [])


def _save(figure, path):
    FigureCanvasAgg(figure)
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=100, bbox_inches="tight")


def gradient_figure(rows, steps, source):
    """One panel per depth (columns) and stage (rows): the plain net dashed, the ResNet solid, so
    that no line hides another."""
    depths = list(dict.fromkeys(row["depth"] for row in rows))
    stages = _stages(steps)
    figure = Figure(figsize=(4.4 * len(depths), 3.3 * len(stages) + 0.9), layout="constrained")
    grid = figure.subplots(len(stages), len(depths), sharey=True, squeeze=False)
    for (stage, title), panels in zip(stages, grid):
        for axes, depth in zip(panels, depths):
            for row in (r for r in rows if r["depth"] == depth):
                grads = row[stage]["layer_grads"]
                label = textwrap.fill(RESNET_LABEL, 110) if row["residual"] else "plain net, no shortcuts (dashed)"
                axes.semilogy(range(len(grads)), grads, label=label, color="tab:blue" if row["residual"] else "tab:red",
                              linestyle="-" if row["residual"] else "--", linewidth=1.2)
            axes.set_title(f"depth {depth}, {title}", fontsize=10)
            axes.grid(alpha=0.3, which="both")
        panels[0].set_ylabel("||dL / d(layer output)||")
    for axes in grid[-1]:
        axes.set_xlabel("conv and linear layers below the output (0 = the classifier)", fontsize=8)
    handles = {label: line for axes in grid.flat for line, label in zip(*axes.get_legend_handles_labels())}
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8)
    figure.suptitle(f"The gradient on its way back, from the output (left) to the input (right)  ({source})",
                    fontsize=11)
    return figure


def share_figure(rows, steps, source):
    """The shortcut share of every block of the ResNets (plain nets have no shortcut: not drawn)."""
    stages = _stages(steps)
    figure = Figure(figsize=(6.2 * len(stages), 5.0), layout="constrained")
    panels = figure.subplots(1, len(stages), sharey=True, squeeze=False)[0]
    for axes, (stage, title) in zip(panels, stages):
        for row in (r for r in rows if r["residual"]):
            shares, entries = row[stage]["shares"], row[stage]["stage_entries"]
            colour = DEPTH_COLOURS.get(row["depth"], "tab:gray")
            axes.plot(range(len(shares)), shares, color=colour, label=row["name"], linewidth=1.4)
            first = [i for i, entry in enumerate(entries) if entry]
            axes.plot(first, [shares[i] for i in first], "o", color=colour, markerfacecolor="white", markersize=5)
        axes.axhline(0.5, color="black", linewidth=0.6, linestyle=":")
        axes.set(title=title, xlabel="residual blocks below the output (0 = the last block)", ylim=(0, 1))
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("shortcut share  ||S'(x)$^T$g|| / (||S'(x)$^T$g|| + ||F'(x)$^T$g||)")
    panels[0].plot([], [], "o", color="black", markerfacecolor="white",
                   label="first block of a stage: option A zero-pads half of the channels,\nso the residual stream "
                         "(and with it the share) restarts smaller there")
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    figure.suptitle("Shortcut share of each residual block: 1 = all of the gradient reaching its input came around "
                    f"the branch, 0 = all through it. Plain nets have no shortcut (not drawn).  ({source})", fontsize=9)
    return figure


# -- the table -----------------------------------------------------------------------------------
def _growth(measurement):
    """||gradient at the first layer|| / ||gradient at the classifier||."""
    return measurement["layer_grads"][-1] / measurement["layer_grads"][0]


def _mean_share(row, measurement):
    """The mean shortcut share over the blocks, as a table cell ("-" for a plain net: no shortcut)."""
    return f"{np.mean(measurement['shares']):.2f}" if row["residual"] else "-"


def table(rows, steps):
    header = f"{'model':<12}{'loss':>8}{'in/out':>10}{'shortcut share':>16}"
    if steps:
        header += f"  | {'train loss':>10}{'loss':>8}{'in/out':>10}{'shortcut share':>16}"
    lines = [f"{'':<12}{'--- at initialisation ---':>42}" + (f"  | {f'--- after {steps} steps ---':>44}" if steps else ""),
             header + f"{'seconds':>9}"]
    for row in rows:
        line = f"{row['name']:<12}{row['init']['loss']:>8.3f}{_growth(row['init']):>10.3g}{_mean_share(row, row['init']):>16}"
        if steps:
            trained = row["trained"]
            line += (f"  | {row['train_loss']:>10.3f}{trained['loss']:>8.3f}{_growth(trained):>10.3g}"
                     f"{_mean_share(row, trained):>16}")
        lines.append(line + f"{row['seconds']:>9.1f}")
    lines.append("in/out: ||gradient at the first conv|| / ||gradient at the classifier||; "
                 "shortcut share: its mean over the blocks (minires.inspect); train loss: the mean over the steps")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    train_set, test_set, source = study_common.load_cifar(args, max(args.steps, 1) * args.batch_size, args.probe)
    probe = (to_device(study_common.NORMALIZE(test_set.data[:args.probe], None), args.device),
             to_device(test_set.targets[:args.probe], args.device))
    print(f"{source}: measuring on {args.probe} test images, training {args.steps} steps of "
          f"{args.batch_size} images (lr {args.lr}) on {args.device}", flush=True)
    rows = []
    for depth in args.depths:
        for residual in (False, True):
            with on_device(args.device):  # CuPy computes on the current GPU only
                rows.append(run(depth, residual, probe, train_set, args))
            print(f"  {rows[-1]['name']}: {rows[-1]['seconds']:.1f} s", flush=True)
    out = Path(args.out)
    _save(gradient_figure(rows, args.steps, source), out / "gradient_per_layer.png")
    _save(share_figure(rows, args.steps, source), out / "shortcut_share.png")
    print(table(rows, args.steps))
    print(f"wrote {out / 'gradient_per_layer.png'} and {out / 'shortcut_share.png'} "
          f"in {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
