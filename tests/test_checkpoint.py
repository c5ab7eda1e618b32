"""Checkpoint files: nothing in them can run, every value comes back as it was saved, a damaged or
doctored file is a clear error naming it, and the pickles of older minires are still read, safely."""
import os
import pickle
import re
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest

from minires import data, nn, optim, train
from minires.checkpoint import CheckpointError, load_state, save_state

FORMAT_1_KEYS = ("epoch", "model", "optimizer", "scheduler", "loader", "random", "history")


def a_state():
    """Every kind of value a training checkpoint holds."""
    rng = np.random.default_rng(0)
    return {
        "format": 2, "epoch": 3,
        "model": OrderedDict([("conv1.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                              ("bn1.num_batches_tracked", np.array(7, dtype=np.int64))]),
        "optimizer": {"state": {0: {"momentum_buffer": rng.standard_normal(5)}, 12: {"step": np.float32(4.0)}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 12], "nesterov": True}]},
        "scheduler": {"milestones": Counter({5: 1, 8: 2}), "_last_lr": [0.1, 1e-300], "anneal": "cos", "x": None},
        "loader": {"seed": 0, "epoch": 4},
        "random": np.random.default_rng(7).bit_generator.state,  # 128-bit integers
        "history": [{"epoch": 1, "lr": np.float64(0.1), "train_loss": float("nan"), "seconds": float("inf"),
                     "images": np.int64(3), "accuracy": 0.1 + 0.2}],
        "$strange key": {"$array": "a dict that looks like a tag"},
    }


def assert_same(ours, expected, where="state"):
    """Equal values of the same types, all the way down (arrays: dtype, shape and bits)."""
    assert type(ours) is type(expected), f"{where}: {type(ours).__name__} != {type(expected).__name__}"
    if isinstance(expected, np.ndarray):
        assert ours.dtype == expected.dtype and ours.shape == expected.shape, where
        np.testing.assert_array_equal(ours, expected, err_msg=where)
    elif isinstance(expected, dict):
        assert list(ours) == list(expected), where
        for key in expected:
            assert_same(ours[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(ours) == len(expected), where
        for index, (a, b) in enumerate(zip(ours, expected)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(expected, float) and np.isnan(expected):
        assert np.isnan(ours), where
    else:
        assert ours == expected, where


def test_every_value_comes_back_with_its_type_and_bits(tmp_path):
    save_state(tmp_path / "checkpoint.npz", a_state())
    state = load_state(tmp_path / "checkpoint.npz")
    assert_same(state, {**a_state(), "model": dict(a_state()["model"])})  # an OrderedDict comes back a dict


def test_the_file_is_an_npz_that_numpy_reads_without_pickle(tmp_path):
    save_state(tmp_path / "checkpoint.npz", a_state())
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as archive:
        assert {"model/conv1.weight", "optimizer/state/0/momentum_buffer", "checkpoint.json"} <= set(archive.files)
        np.testing.assert_array_equal(archive["model/conv1.weight"], a_state()["model"]["conv1.weight"])


@pytest.mark.parametrize("value", [np.array([None, 1], dtype=object), {1, 2}, lambda: 0, b"bytes"],
                         ids=["object array", "set", "function", "bytes"])
def test_values_a_checkpoint_cannot_hold_are_refused_when_writing(tmp_path, value):
    with pytest.raises(TypeError, match=r"checkpoint cannot hold .* at history/0"):
        save_state(tmp_path / "checkpoint.npz", {"history": [value]})
    assert not (tmp_path / "checkpoint.npz").exists()


def a_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def _optimizer_schedule_loader(model):
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = optim.lr_scheduler.MultiStepLR(optimizer, [2, 4])
    loader = data.DataLoader((np.zeros((4, 3, 5, 5), np.uint8), np.zeros(4, np.int64)), 2)
    return optimizer, schedule, loader


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _format_1(path, content):
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=pickle.HIGHEST_PROTOCOL)


def test_a_doctored_pickle_checkpoint_runs_nothing(tmp_path):
    path, marker = tmp_path / train.LEGACY_CHECKPOINT_NAME, tmp_path / "payload_ran"
    _format_1(path, {"format": 1, "epoch": 0, "model": {"conv1.weight": _Payload(marker)}})
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*global posix\.system is not allowed.*Nothing in it was run"):
        train.load_checkpoint(path, a_model())
    assert not marker.exists()


def test_a_doctored_npz_checkpoint_runs_nothing(tmp_path):
    """An object array is the one place an .npz can hide a pickle; allow_pickle=False refuses it."""
    path, marker = tmp_path / train.CHECKPOINT_NAME, tmp_path / "payload_ran"
    save_state(path, a_state())
    with zipfile.ZipFile(path, "a") as archive, archive.open("model/evil.npy", "w") as member:
        np.lib.format.write_array(member, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*allow_pickle=False.*Nothing in it was run"):
        train.read_checkpoint(path)
    assert not marker.exists()


def _npz(**arrays):
    def write(path):
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    return write


def _npz_with_json(text):
    return _npz(**{"checkpoint.json": np.frombuffer(text.encode(), dtype=np.uint8)})


def _cut_short(path):
    save_state(path, a_state())
    path.write_bytes(path.read_bytes()[:3000])


def _cut_short_format_1(path):
    _format_1(path, {"format": 1, **{key: a_state()[key] for key in FORMAT_1_KEYS}})
    path.write_bytes(path.read_bytes()[:500])


DAMAGED = {
    "empty file": (lambda path: path.write_bytes(b""), r"the file is empty"),
    "random bytes": (lambda path: path.write_bytes(np.random.default_rng(0).bytes(4000)),
                     r"neither an \.npz .* nor a pickle"),
    "random bytes after a pickle's first byte": (lambda path: path.write_bytes(b"\x80" + np.random.default_rng(0).bytes(99)),
                                                 r"UnpicklingError|ValueError|EOFError"),
    "npz cut short": (_cut_short, r"BadZipFile|EOFError"),
    "pickle cut short": (_cut_short_format_1, r"UnpicklingError|EOFError"),
    "npz without checkpoint.json": (_npz(weights=np.zeros(3)),
                                    r"holds no checkpoint\.json"),
    "npz with broken JSON": (_npz_with_json('{"epoch": '), r"JSONDecodeError"),
    "npz with an unknown tag": (_npz_with_json('{"epoch": {"$eval": "1"}}'), r"unknown entry \$eval"),
    "npz naming a missing array": (_npz_with_json('{"model": {"$array": "model/w"}}'), r"no array model/w"),
    "npz of another dict": (lambda path: save_state(path, {"weights": np.zeros(3)}),
                            r"not a training checkpoint \(no epoch, model, optimizer"),
    "pickle of another dict": (lambda path: _format_1(path, {"format": 1, "hello": 1}),
                               r"not a training checkpoint \(no epoch, model"),
    "pickle of a list": (lambda path: _format_1(path, [1, 2]), r"expected a dict, got list"),
}


@pytest.mark.parametrize("damage", DAMAGED)
@pytest.mark.parametrize("name", [train.CHECKPOINT_NAME, train.LEGACY_CHECKPOINT_NAME])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(tmp_path, damage, name):
    path = tmp_path / name
    write, problem = DAMAGED[damage]
    write(path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))} .*({problem})"):
        train.read_checkpoint(path)


def test_a_checkpoint_of_another_model_names_the_file(tmp_path):
    path = tmp_path / train.CHECKPOINT_NAME
    model = a_model()
    train.save_checkpoint(path, model, *_optimizer_schedule_loader(model), epoch=0, history=[])
    with pytest.raises(CheckpointError, match=rf"(?s){re.escape(str(path))} does not fit.*unexpected keys: 1\.weight"):
        train.load_checkpoint(path, nn.Sequential(nn.Linear(3, 2)))
