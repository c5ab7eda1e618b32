"""Shattered gradients (Balduzzi et al. 2017): the gradient of a net from R to R over its input, in
feed-forward nets and in residual nets with batch norm, at initialisation.

    python demos/shattered_gradients.py --quick     # 7 depths, 4 nets each: about a minute
    python demos/shattered_gradients.py             # 17 depths from 1 to 50, 10 nets each

The nets and the measurement are ``minires.study.shattered``'s (200 ReLU units per layer; dy/dx at
256 evenly spaced inputs in [-2, 2], from the hand-written backward, batch statistics computed over
the 256 inputs and then held fixed). Three kinds: feed-forward, feed-forward with batch norm, and
residual with batch norm. Writes into --out:

  shattered_gradients.png   top: dy/dx against x for a 1-layer and a 24-layer feed-forward net (with
                            and without batch norm) and a 50-layer residual net (the paper's Fig. 1);
                            bottom left: their autocorrelation; bottom right: the correlation between
                            the gradients at neighbouring inputs against depth (mean and standard
                            deviation over the nets), beside 2^-L and 1/sqrt(L)
  shattered_gradients.json  the numbers

and prints the kinks of the example nets (how often a unit switches between neighbouring inputs) and
the correlations per depth.
"""
import os

if __name__ == "__main__":  # one BLAS thread unless the user says otherwise (see demos/degradation.py)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import study_common  # the sibling module: python puts demos/ on sys.path
from minires.study import shattered

LABELS = {"feedforward": "feed-forward", "feedforward_bn": "feed-forward + BN", "residual_bn": "residual + BN"}
COLOURS = {"feedforward": "tab:orange", "feedforward_bn": "tab:red", "residual_bn": "tab:blue"}
EXAMPLES = [("feedforward", 1), ("feedforward", 24), ("feedforward_bn", 24), ("residual_bn", 50)]
PRESETS = {"quick": {"depths": [1, 2, 4, 8, 16, 32, 50], "nets": 4},
           "full": {"depths": [*range(1, 11), 12, 16, 20, 24, 32, 40, 50], "nets": 10}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", default="full",
                   help=f"depths {PRESETS['quick']['depths']}, {PRESETS['quick']['nets']} nets each")
    p.add_argument("--depths", type=int, nargs="+", help="depths L (default: the preset's)")
    p.add_argument("--nets", type=int, help="independently initialised nets per depth and kind")
    p.add_argument("--width", type=int, default=200, help="ReLU units per layer")
    p.add_argument("--inputs", type=int, default=256, help="evenly spaced inputs in [-2, 2]")
    p.add_argument("--seed", type=int, default=0, help="the nets' seeds are seed, seed + 1, ...")
    p.add_argument("--out", default="runs/shattered_gradients", help="folder for the figure and the numbers")
    args = p.parse_args(argv)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def examples(args):
    """The gradients and autocorrelations of the example nets (Fig. 1), from ``--seed``."""
    x = shattered.evenly_spaced_inputs(args.inputs)
    rows = []
    for kind, depth in EXAMPLES:
        net = shattered.make_net(kind, depth, args.width, args.seed)
        g = shattered.input_gradients(net, x)
        rows.append({"kind": kind, "depth": depth, "gradients": g.tolist(),
                     "autocorrelation": shattered.autocorrelation(g, min(50, args.inputs - 1)).tolist(),
                     "relu_switches": shattered.relu_switches(net, x)})
    return x.reshape(-1).tolist(), rows


def plot(x, example_rows, curves, args, path):
    figure = Figure(figsize=(15, 8.5), layout="constrained")
    grid = figure.add_gridspec(2, len(example_rows))
    for column, row in enumerate(example_rows):
        axes = figure.add_subplot(grid[0, column])
        axes.plot(x, row["gradients"], color=COLOURS[row["kind"]], linewidth=0.8)
        axes.set(title=f"{LABELS[row['kind']]}, L = {row['depth']}", xlabel="input x")
        axes.grid(alpha=0.3)
    figure.axes[0].set_ylabel("dy/dx")
    acf = figure.add_subplot(grid[1, :len(example_rows) // 2])
    for row in example_rows:
        acf.plot(row["autocorrelation"], color=COLOURS[row["kind"]], linestyle="-" if row["depth"] > 1 else ":",
                 label=f"{LABELS[row['kind']]}, L = {row['depth']}")
    acf.axhline(0, color="black", linewidth=0.6)
    acf.set(title="autocorrelation of dy/dx over the inputs", xlabel="lag (neighbouring inputs apart)",
            ylabel="rho(lag)")
    acf.legend(fontsize=8)
    acf.grid(alpha=0.3)
    depth_axes = figure.add_subplot(grid[1, len(example_rows) // 2:])
    depths = np.array(args.depths)
    for kind, values in curves.items():
        depth_axes.errorbar(depths, np.mean(values, axis=1), yerr=np.std(values, axis=1), marker="o", capsize=2,
                            color=COLOURS[kind], label=LABELS[kind])
    depth_axes.plot(depths, 2.0 ** -depths, "k--", linewidth=0.9, label="2^-L")
    depth_axes.plot(depths, 1 / np.sqrt(depths), "k:", linewidth=1.2, label="1/sqrt(L)")
    noise = 1 / np.sqrt(args.inputs)  # the spread of rho(1) of white noise
    depth_axes.axhspan(-noise, noise, color="gray", alpha=0.2, label="white noise: ±1/sqrt(inputs)")
    depth_axes.set_xscale("log")
    depth_axes.set(title=f"correlation of the gradients at neighbouring inputs ({args.nets} nets: mean ± sd)",
                   xlabel="depth L", ylabel="rho(1)")
    depth_axes.legend(fontsize=8)
    depth_axes.grid(alpha=0.3, which="both")
    figure.suptitle(f"Shattered gradients: nets from R to R, {args.width} ReLU units per layer, dy/dx at "
                    f"{args.inputs} inputs in [-2, 2], at initialisation", fontsize=10)
    study_common.write_png(figure, path, dpi=80)


def kinks_table(example_rows):
    lines = [f"{'example net':<28}{'ReLU switches: layer 1':>24}{'last layer':>12}{'all layers':>12}"]
    lines += [f"{LABELS[row['kind']] + ', L = ' + str(row['depth']):<28}{row['relu_switches'][0]:>24}"
              f"{row['relu_switches'][-1]:>12}{sum(row['relu_switches']):>12}" for row in example_rows]
    lines.append("a unit's input changing sign between neighbouring inputs (summed over the units): the kinks of y(x)")
    return "\n".join(lines)


def table(curves, depths):
    lines = [f"{'depth':>6}" + "".join(f"{LABELS[kind]:>20}" for kind in curves) + f"{'2^-L':>10}{'1/sqrt(L)':>11}"]
    for index, depth in enumerate(depths):
        lines.append(f"{depth:>6}" + "".join(f"{np.mean(values[index]):>12.3f} ± {np.std(values[index]):.2f}"
                                             for values in curves.values())
                     + f"{2.0 ** -depth:>10.3g}{1 / np.sqrt(depth):>11.3f}")
    lines.append("rho(1), the correlation between dy/dx at neighbouring inputs: mean ± standard deviation over the nets")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    x, example_rows = examples(args)
    curves = {}
    for kind in shattered.KINDS:
        curves[kind] = shattered.correlation_vs_depth(kind, args.depths, args.nets, args.width, args.inputs, args.seed)
        print(f"{LABELS[kind]}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    out = Path(args.out)
    plot(x, example_rows, curves, args, out / "shattered_gradients.png")
    correlations = {kind: values.tolist() for kind, values in curves.items()}
    study_common.save_json({"config": vars(args), "inputs": x, "examples": example_rows,
                            "neighbour_correlation": correlations}, out / "shattered_gradients.json")
    print(kinks_table(example_rows))
    print(table(curves, args.depths))
    print(f"wrote {out / 'shattered_gradients.png'} and {out / 'shattered_gradients.json'} "
          f"in {time.perf_counter() - start:.0f} s")
    return curves


if __name__ == "__main__":
    main()
