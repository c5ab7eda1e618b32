"""Loss landscapes (Li et al. 2018) of trained ResNets and their plain twins: the loss along a
filter-normalised random direction (1-D) and on a plane of two (2-D contours).

    python demos/loss_landscape.py --quick                   # ResNet-56 and plain-56, shipped weights
    python demos/loss_landscape.py --net resnet20=runs/resnet20/checkpoint.npz --net plain20=runs/plain20/checkpoint.npz
    python demos/loss_landscape.py --net resnet56 --net plain56 --max-points 100   # a full sweep, in parts

``--net NAME[=WEIGHTS]``: NAME is ``resnetD`` or ``plainD`` (He et al.'s CIFAR nets of depth D = 6n+2,
option-A shortcuts, as ``demos/train_cifar_resnet18.py --model resnetD [--plain]`` trains them);
WEIGHTS is a file (an ``.npz`` of the state dict, or a training checkpoint of that demo:
``checkpoint.npz``, or an older minires' ``checkpoint.pkl``), ``cifar10`` (the
weights shipped with minires: ``models.resnetD(weights="cifar10")``, the default) or ``init`` (the
untrained net, seeded). The measurement is ``minires.study.landscape``'s: directions normalised
filter by filter, none for biases and batch norm, running statistics fixed, evaluation mode, the
first ``--images`` training images without augmentation, the same direction seed for every net.

Sweeps are resumable: each net's line and grid are kept in ``--out`` as ``NAME_line.npz`` and
``NAME_grid.npz`` and filled in where a stopped run left off (``--max-points`` stops every sweep
after that many new points, to split a long sweep over several runs). Writes loss_landscape.png
(left: the 1-D loss and accuracy; right: a contour plot per net) and loss_landscape.json.
"""
import os

if __name__ == "__main__":  # one BLAS thread unless the user says otherwise (see demos/degradation.py)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import inspect
import re
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

import study_common  # the sibling module: python puts demos/ on sys.path
import minires
from minires import data, models, train
from minires.checkpoint import DOCUMENT
from minires.io import load_npz
from minires.models.weights import METADATA_KEY, weights_name
from minires.study import landscape

PRESETS = {"quick": {"images": 256, "line_points": 11, "grid_points": 7},
           "full": {"images": 1000, "line_points": 51, "grid_points": 21}}  # the paper's resolution
COLOURS = {"resnet": "tab:blue", "plain": "tab:red"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[
                                    __doc__.index("``--net NAME"):__doc__.index("Writes loss_landscape")])
    p.add_argument("--net", action="append", metavar="NAME[=WEIGHTS]",
                   help="a network and its weights (default: resnet56 and plain56 with the shipped weights)")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", default="full",
                   help="256 images, 11 points on the line, a 7 x 7 grid (default: 1000 images, 51 points, 21 x 21)")
    p.add_argument("--images", type=int, help="training images the loss is measured on")
    p.add_argument("--line-points", type=int, help="points of the 1-D sweep in [-extent, extent]")
    p.add_argument("--grid-points", type=int, help="points per side of the 2-D grid (0: no grid)")
    p.add_argument("--extent", type=float, default=1.0, help="the sweeps cover [-extent, extent] (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default: 0)")
    p.add_argument("--batch-size", type=int, default=250, help="images per forward pass (default: 250)")
    p.add_argument("--max-points", type=int, help="stop every sweep after this many new points (resume later)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--out", default="runs/loss_landscape", help="folder for the sweeps, the figure and the numbers")
    study_common.add_data_arguments(p)
    args = p.parse_args(argv)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.net = [parse_net(p, spec) for spec in (args.net or ["resnet56", "plain56"])]
    return args


def parse_net(parser, spec):
    """``"resnet56=path"`` -> ``("resnet56", 56, True, "path")``."""
    name, _, weights = spec.partition("=")
    match = re.fullmatch(r"(resnet|plain)(\d+)", name)
    if not match or (int(match[2]) - 2) % 6 or int(match[2]) < 8:
        parser.error(f"--net {spec}: expected resnetD or plainD with a depth D = 6n+2 (20, 56, ...), "
                     "optionally followed by =WEIGHTS")
    return name, int(match[2]), match[1] == "resnet", weights or "cifar10"


def build(depth, residual, weights, seed):
    """The CIFAR network with the weights of ``weights`` (see the module docstring); a file or name
    that does not give usable weights ends the demo with a one-line message."""
    minires.manual_seed(seed)
    if weights == "init":
        return study_common.build_model(depth, residual)
    path = Path(weights)
    try:
        if path.suffix in (".npz", ".pkl") or path.is_file():
            return load_weights_file(path, study_common.build_model(depth, residual))
        factory = getattr(models, f"resnet{depth}", None)
        if factory is None or "weights" not in inspect.signature(factory).parameters:
            sys.exit(f"--net: this minires ships no weights {weights!r} for resnet{depth}; give the path of an "
                     ".npz or of a checkpoint.pkl")
        return factory(residual=residual, weights=weights)
    except (OSError, ValueError) as error:  # missing or unreadable files, weights that do not fit
        sys.exit(f"--net {weights_name(depth, residual)}={weights}: not usable ({error})")


def load_weights_file(path, model):
    """``model`` with the weights of ``path``: a training checkpoint, a shipped weights file (its
    metadata entry set aside) or an ``.npz`` of a state dict."""
    if not path.is_file():
        sys.exit(f"--net: there is no weights file {path}")
    if is_training_checkpoint(path):
        train.load_checkpoint(path, model)
        return model
    state = load_npz(path)
    state.pop(METADATA_KEY, None)
    model.load_state_dict(state)
    return model


def is_training_checkpoint(path):
    """The demo's ``checkpoint.npz`` (its JSON document inside) or an older ``checkpoint.pkl``, rather
    than an ``.npz`` of a state dict."""
    if path.suffix == ".pkl":
        return True
    with np.load(path, allow_pickle=False) as archive:
        return DOCUMENT in archive.files


def local_minima(loss):
    """Interior points of the grid lower than all 8 neighbours: 1 on a convex bowl, many on a chaotic surface."""
    centre = loss[1:-1, 1:-1]
    neighbours = [loss[1 + di:loss.shape[0] - 1 + di, 1 + dj:loss.shape[1] - 1 + dj]
                  for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
    return int(np.sum(np.all([centre < n for n in neighbours], axis=0)))


def measure(name, depth, residual, weights, loader, args):
    model = build(depth, residual, weights, args.seed).to(args.device)
    directions = landscape.random_directions(model, 2, args.seed)
    start = time.perf_counter()

    def progress(what):
        def report(done, total):
            if done % 10 == 0 or done == total:
                print(f"  {name} {what}: {done}/{total} points ({time.perf_counter() - start:.0f} s)", flush=True)
        return report

    out, line_axis = Path(args.out), np.linspace(-args.extent, args.extent, args.line_points)
    line = landscape.sweep(model, directions[:1], [line_axis], loader, out / f"{name}_line.npz",
                           max_points=args.max_points, device=args.device, on_progress=progress("line"))
    row = {"name": name, "depth": depth, "residual": residual, "weights": weights,
           "line": {"axis": line_axis.tolist(), "loss": line["loss"].tolist(), "accuracy": line["accuracy"].tolist()}}
    if args.grid_points:
        grid_axis = np.linspace(-args.extent, args.extent, args.grid_points)
        grid = landscape.sweep(model, directions, [grid_axis, grid_axis], loader, out / f"{name}_grid.npz",
                               max_points=args.max_points, device=args.device, on_progress=progress("grid"))
        row["grid"] = {"axis": grid_axis.tolist(), "loss": grid["loss"].tolist(), "accuracy": grid["accuracy"].tolist(),
                       "local_minima": local_minima(grid["loss"]) if grid["complete"] else None}
    row["seconds"] = time.perf_counter() - start
    return row


# -- the figure and the table ----------------------------------------------------------------------
def plot(rows, path, title):
    gridded = [row for row in rows if "grid" in row]
    figure = Figure(figsize=(5.5 * (1 + len(gridded)), 4.6), layout="constrained")
    panels = figure.subplots(1, 1 + len(gridded), squeeze=False)[0]
    loss_axes, accuracy_axes = panels[0], panels[0].twinx()
    for row in rows:
        colour = COLOURS["resnet" if row["residual"] else "plain"]
        width = 1 + row["depth"] / 40
        loss_axes.plot(row["line"]["axis"], row["line"]["loss"], color=colour, linewidth=width, label=row["name"])
        accuracy_axes.plot(row["line"]["axis"], 100 * np.array(row["line"]["accuracy"]), color=colour,
                           linewidth=width, linestyle="--")
    loss_axes.set(title="1-D: solid loss, dashed accuracy", xlabel="a (step along the direction)", ylabel="loss",
                  yscale="log")
    loss_axes.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    loss_axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.2, 0.5, 1, 2 rather than 2 x 10^-1
    loss_axes.yaxis.set_minor_formatter(NullFormatter())
    accuracy_axes.set(ylabel="accuracy (%)", ylim=(0, 100))
    loss_axes.legend(fontsize=8)
    loss_axes.grid(alpha=0.3)
    losses = np.concatenate([np.ravel(row["grid"]["loss"]) for row in gridded]) if gridded else np.array([1.0])
    levels = np.geomspace(max(np.nanmin(losses), 1e-3), max(np.nanmin(losses) * 2, min(np.nanmax(losses), 10)), 16)
    for axes, row in zip(panels[1:], gridded):
        axis = row["grid"]["axis"]
        contours = axes.contour(axis, axis, np.array(row["grid"]["loss"]).T, levels=levels, cmap="viridis")
        axes.clabel(contours, fontsize=6, fmt="%.2g")
        axes.plot([0], [0], "k+")
        axes.set(title=f"2-D: {row['name']} loss", xlabel="a", ylabel="b", aspect="equal")
    figure.suptitle(title, fontsize=10)
    study_common.write_png(figure, path, dpi=90)


def table(rows):
    lines = [f"{'net':<12}{'loss at 0':>11}{'accuracy at 0':>15}{'line: max loss':>16}{'grid: mean loss':>17}"
             f"{'local minima':>14}{'minutes':>9}"]
    for row in rows:
        line = np.array(row["line"]["loss"])
        grid = row.get("grid", {})
        mean = f"{np.nanmean(grid['loss']):.3f}" if grid else "-"
        minima = grid.get("local_minima")
        lines.append(f"{row['name']:<12}{line[len(line) // 2]:>11.3f}{100 * row['line']['accuracy'][len(line) // 2]:>14.1f}%"
                     f"{np.nanmax(line):>16.3f}{mean:>17}{'-' if minima is None else minima:>14}"
                     f"{row['seconds'] / 60:>9.1f}")
    lines.append("at 0: the trained weights (an odd number of points puts 0 on the line); local minima: interior "
                 "grid points below all 8 neighbours ('-': grid incomplete or none); minutes: of this run (points "
                 "taken from the saved sweeps cost none)")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    train_set, _, source = study_common.load_cifar(args, args.images, 1)
    loader = data.DataLoader(train_set, args.batch_size, transform=study_common.NORMALIZE)  # fixed, no augmentation
    title = (f"{source}: loss on the first {len(train_set)} training images, filter-normalised directions "
             f"(seed {args.seed}), {args.line_points} points on the line, {args.grid_points}^2 on the grid")
    print(title, flush=True)
    rows = []
    for name, depth, residual, weights in args.net:
        rows.append(measure(name, depth, residual, weights, loader, args))
        config = {**vars(args), "net": [list(net) for net in args.net]}
        study_common.save_json({"config": config, "source": source, "rows": rows}, Path(args.out) / "loss_landscape.json")
        plot(rows, Path(args.out) / "loss_landscape.png", title)
    print(table(rows))
    print(f"wrote {Path(args.out) / 'loss_landscape.png'} and {Path(args.out) / 'loss_landscape.json'}")
    return rows


if __name__ == "__main__":
    main()
