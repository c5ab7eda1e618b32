"""Train a ResNet on CIFAR-10 with minires: NumPy on the CPU, CuPy on a GPU.

    python demos/train_cifar_resnet18.py --download                  # ResNet-18, the full recipe
    python demos/train_cifar_resnet18.py --model resnet20 --epochs 10   # 87.3% (88.4% with --tta), ~40 min on 2 cores
    python demos/train_cifar_resnet18.py --subset 2000 --epochs 2       # a quick look

Writes into the run folder (--out): checkpoint.npz, metrics.csv, metrics.json, curves.png,
confusion_matrix.png and config.json (the flags of the run's last start).

--resume continues the run in --out where it stopped. The flags that define the run (the model
and its arguments, epochs, batch size, learning rate and schedule, momentum, weight decay, label
smoothing, seed, subset) must be the ones its checkpoint records, or the run is refused; device,
data folder, progress bars, --tta may differ. --eval-only evaluates the checkpoint (the model
flags must match it) and needs only the test file. Errors print one line; --debug (or
MINIRES_DEBUG=1) shows the traceback.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import minires
from minires import data, models, optim, train
from minires.backend import parse_device
from minires.io import atomic_write
from minires.plots import plot_confusion_matrix, plot_training_curves

DEFAULT_DATA = os.environ.get("MINIRES_DATA", str(Path.home() / ".cache" / "minires" / "data"))
MODEL_FLAGS = ("model", "width", "plain", "shortcut")  # build_model's name and arguments
RECIPE_FLAGS = MODEL_FLAGS + ("epochs", "batch_size", "lr", "schedule", "warmup", "momentum", "nesterov",
                              "weight_decay", "label_smoothing", "seed", "subset")
NORMALIZE = [data.ToFloat(), data.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD)]


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def device_name(text):
    try:
        parse_device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}") from None
    return text


def parse_args(argv=None):
    p = _Parser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="resnet18_cifar", choices=sorted(models.CIFAR_MODELS),
                   help="network to train")
    p.add_argument("--width", type=positive_int, default=None,
                   help="channels of the first stage (default: the model's own, 64 or 16)")
    p.add_argument("--plain", action="store_true", help="no skip connections (He et al.'s plain nets)")
    p.add_argument("--shortcut", choices=["A", "B"], default="A",
                   help="shortcut of the He et al. CIFAR nets (resnet20..110) where shapes change")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step"], default="onecycle",
                   help="learning-rate schedule, stepped after every batch")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="epochs of linear warm-up (cosine/step; onecycle warms up for 30%% of the run)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="on conv/linear weights only (not on biases or batch-norm parameters)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the logits of each test image and its mirror")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DEFAULT_DATA,
                   help="folder that holds cifar-10-batches-py/ (env MINIRES_DATA)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 (170 MB) if missing")
    p.add_argument("--subset", type=positive_int, default=None, help="train on the first N training images")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N (CuPy)")
    p.add_argument("--out", default=None, help="run folder (default: runs/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (same recipe flags)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the checkpoint in --out on the test set")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--debug", action="store_true", default=os.environ.get("MINIRES_DEBUG", "") not in ("", "0"),
                   help="show the traceback of an error (also env MINIRES_DEBUG=1)")
    args = p.parse_args(argv)
    args.out = Path(args.out or Path("runs") / args.model)
    return args


def recipe_of(args, flags=RECIPE_FLAGS):
    return {flag: getattr(args, flag) for flag in flags}


def recorded_recipe(checkpoint):
    """The recipe the checkpoint records; a format-1 checkpoint.pkl recorded none, and then the
    config.json its run wrote stands in (written at the run's last start, with that start's flags)."""
    recipe = train.read_checkpoint(checkpoint)["recipe"]
    if recipe is not None:
        return recipe
    config = checkpoint.parent / "config.json"
    if not config.is_file():
        raise train.RecipeMismatchError(f"{checkpoint} records no settings (an older minires wrote it) and "
                                        f"{config} is missing: nothing says which run it belongs to")
    return json.loads(config.read_text())


def build_model(args):
    factory = models.CIFAR_MODELS[args.model]
    kwargs = {"num_classes": 10, "residual": not args.plain}
    if args.width is not None:
        kwargs["width"] = args.width
    if args.model != "resnet18_cifar":
        kwargs["shortcut"] = args.shortcut
    return factory(**kwargs)


def build_test_loader(args):
    test_set = data.CIFAR10(args.data_dir, train=False, download=args.download)
    return data.DataLoader(test_set, 500, transform=data.Compose(NORMALIZE)), test_set.classes


def build_loaders(args):
    train_set = data.CIFAR10(args.data_dir, train=True, download=args.download)
    if args.subset is not None:
        if args.subset > len(train_set):
            raise ValueError(f"--subset {args.subset} is more than the {len(train_set):,} training images")
        train_set = data.Subset.first(train_set, args.subset)
    if len(train_set) < args.batch_size:
        images = f"--subset {args.subset}" if args.subset else f"the {len(train_set)} training images"
        raise ValueError(f"{images}: fewer than one batch (--batch-size {args.batch_size}), nothing to train "
                         "on; take more images or a smaller batch")
    augment = data.Compose([data.RandomCrop(32, padding=4), data.RandomHorizontalFlip(), *NORMALIZE])
    train_loader = data.DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True,
                                   transform=augment, seed=args.seed)
    return (train_loader, *build_test_loader(args))


def build_schedule(args, optimizer, steps_per_epoch):
    """Per-batch schedule: one-cycle, or linear warm-up followed by cosine or steps."""
    total = args.epochs * steps_per_epoch
    sched = optim.lr_scheduler
    if args.schedule == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total, pct_start=0.3)
    warmup = min(int(args.warmup * steps_per_epoch), total - 1)
    if args.schedule == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=total - warmup)
    else:  # "step": divide by 10 at half and three quarters of the run
        main = sched.MultiStepLR(optimizer, [int(total * 0.5) - warmup, int(total * 0.75) - warmup], gamma=0.1)
    if warmup == 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def print_epoch(row, epochs):
    print(f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4f}  "
          f"train loss {row['train_loss']:.3f} acc {row['train_accuracy']:6.2%}  "
          f"test loss {row['test_loss']:.3f} acc {row['test_accuracy']:6.2%}  "
          f"{row['seconds'] / 60:5.1f} min  {row['images_per_second']:6.0f} img/s  "
          f"(+ {row['test_seconds']:.0f} s test)", flush=True)


def evaluate_checkpoint(args):
    """``--eval-only``: the checkpoint's accuracy on the test set (and its confusion matrix, if it can be written)."""
    checkpoint = train.find_checkpoint(args.out)
    if checkpoint is None:
        raise FileNotFoundError(f"--eval-only: no checkpoint in {args.out}; train first (without --eval-only)")
    train.check_recipe(recorded_recipe(checkpoint), recipe_of(args, MODEL_FLAGS), checkpoint)
    model = build_model(args).to(args.device)
    train.load_checkpoint(checkpoint, model)
    test_loader, classes = build_test_loader(args)
    result = train.evaluate(model, test_loader, device=args.device, progress=not args.no_progress, flip=args.tta)
    print(f"test loss {result['loss']:.3f}  accuracy {result['accuracy']:.2%}")
    try:
        plot_confusion_matrix(result["confusion"], classes, args.out / "confusion_matrix.png")
    except OSError as error:  # a run folder one may read but not write
        print(f"warning: confusion_matrix.png not written ({error})")
    return result


def main(argv=None):
    """Run the command line; errors are raised (``cli`` turns them into one line)."""
    return run(parse_args(argv))


def run(args):
    """Train (or, with --eval-only, evaluate) as ``args`` say; returns the history (or the result)."""
    if args.eval_only:
        return evaluate_checkpoint(args)
    checkpoint = train.find_checkpoint(args.out) if args.resume else None
    if args.resume and checkpoint is None:
        print(f"--resume: no checkpoint in {args.out}; starting a new run")
    if checkpoint is not None:  # refused before anything is built or written
        train.check_recipe(recorded_recipe(checkpoint), recipe_of(args), checkpoint)
    minires.manual_seed(args.seed)
    model = build_model(args).to(args.device)
    train_loader, test_loader, classes = build_loaders(args)
    optimizer = optim.SGD(optim.weight_decay_groups(model, args.weight_decay), lr=args.lr,
                          momentum=args.momentum, nesterov=args.nesterov)
    scheduler = build_schedule(args, optimizer, len(train_loader))
    n_params = sum(p.size for p in model.parameters())
    print(f"{args.model}{' (plain)' if args.plain else ''}: {n_params:,} parameters on {args.device}; "
          f"{len(train_loader.dataset.targets):,} training and {len(test_loader.dataset.targets):,} test "
          f"images; run folder {args.out}")

    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "config.json", "w") as f:
        json.dump({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, f, indent=2)

    def report(history, test):
        print_epoch(history[-1], args.epochs)
        plot_training_curves(history, args.out / "curves.png", title=f"{args.model} on CIFAR-10")
        plot_confusion_matrix(test["confusion"], classes, args.out / "confusion_matrix.png")

    history = train.fit(model, optimizer, train_loader, test_loader, args.epochs, args.out, scheduler,
                        train.CrossEntropyLoss(label_smoothing=args.label_smoothing), args.device,
                        resume=args.resume, progress=not args.no_progress, on_epoch_end=report,
                        flip_test=args.tta, recipe=recipe_of(args))
    if history:
        best = max(row["test_accuracy"] for row in history)
        print(f"done: final test accuracy {history[-1]['test_accuracy']:.2%} (best {best:.2%}); "
              f"files in {args.out}")
    return history


def cli(argv=None):
    """The command line: an error prints one line and exits 1 (--debug shows the traceback)."""
    args = parse_args(argv)
    try:
        return run(args)
    except Exception as error:
        if args.debug:
            raise
        kind = "stopped" if isinstance(error, train.NonFiniteError) else "error"
        sys.exit(f"{kind}: {' '.join(str(error).split())}")


if __name__ == "__main__":
    cli()
