"""``python -m minires.models.weights list | export RUN_DIR``: the shipped weights, and making them."""
import argparse
import sys

from . import available, metadata, weights_path
from .export import export


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m minires.models.weights",
                                description="The trained CIFAR-10 weights that ship with minires, and making them.")
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped weights: accuracy and the command that trained them")
    e = commands.add_parser("export", help="a finished run of demos/train_cifar_resnet18.py -> NAME_cifar10.npz")
    e.add_argument("run_dir", help="the run folder (--out of the demo): config.json and the checkpoint")
    e.add_argument("--data-dir", default=None,
                   help="folder that holds cifar-10-batches-py/ (default: the run's own --data-dir)")
    e.add_argument("--out", default=None, help="weights file to write (default: the package's NAME_cifar10.npz)")
    e.add_argument("--partial", action="store_true", help="export a run that has not finished its epochs")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "list":
        for name in available():
            info = metadata(name)
            print(f"{name:10} {info['test_accuracy']:7.2%}  {weights_path(name)}\n{'':10} {info['command']}")
        return 0
    try:
        info = export(args.run_dir, args.data_dir, args.out, args.partial)
    except (OSError, ValueError) as error:
        sys.exit(str(error))
    demo = info["demo_test_accuracy"]
    print(f"{info['name']}: test accuracy {info['test_accuracy']:.2%} on {info['test_images']:,} images "
          f"(the demo measured {'nothing' if demo is None else f'{demo:.2%}'}), "
          f"{info['epochs_trained']} of {info['epochs']} epochs; {args.out or weights_path(info['name'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
