"""minires.distributed and SyncBatchNorm in one process (the runs over a real mpiexec are in test_mpi.py).

One process: world size 1, no mpi4py imported, every collective the identity. The loader's shards
of a global batch put together are the one-process batch. The synchronised batch norm's arithmetic
(global sums and sums of squares, the backward from the reduced sums), run through the one-process
group, against PyTorch's batch norm (its gradient check is among ``python -m minires.gradcheck``'s);
the layer itself is batch norm in one process; convert_sync_batchnorm keeps names, state and the Parameter objects.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import minires
from minires import data, distributed, models, nn
from minires.nn.functional import sync_batch_norm_backward, sync_batch_norm_forward

from tests.support.torch_helpers import assert_close, to_torch

ROOT = Path(__file__).resolve().parents[1]


def _python(code, **environment):
    """Run ``code`` in a fresh Python with this checkout first on the path and no launcher variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env.update(PYTHONPATH=str(ROOT), **environment)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


# -- the process group -------------------------------------------------------------------------
def test_one_process_is_world_size_1_and_never_imports_mpi4py():
    done = _python("import sys, numpy as np, minires\n"
                   "from minires import distributed, models\n"
                   "model = models.resnet20(width=4)\n"
                   "for p in model.parameters(): p.grad = np.ones_like(p.data)\n"
                   "distributed.broadcast_module(model); distributed.allreduce_gradients(model)\n"
                   "print(distributed.rank(), distributed.world_size(), distributed.is_main_process(),\n"
                   "      distributed.sum_over_processes(1.5, 2), 'mpi4py' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "True", "(1.5,", "2.0)", "False"]


@pytest.mark.parametrize("environ, size", [({}, None), ({"PMI_SIZE": "3", "PMI_RANK": "1"}, 3),
                                           ({"OMPI_COMM_WORLD_SIZE": "4"}, 4), ({"PMI_SIZE": "1"}, 1)])
def test_the_launcher_is_read_from_the_environment(environ, size):
    assert distributed.launcher_world_size(environ) == size


def test_a_garbled_launcher_variable_is_named():
    with pytest.raises(ValueError, match="PMI_SIZE should be a number of processes, got 'two'"):
        distributed.launcher_world_size({"PMI_SIZE": "two"})


def test_mpiexec_without_mpi4py_says_what_to_install():
    # mpi4py made unimportable: what a user without the [mpi] extra sees under mpiexec
    done = _python("import sys; sys.modules['mpi4py'] = None\n"
                   "from minires import distributed; distributed.get_group()", PMI_SIZE="2", PMI_RANK="0")
    assert done.returncode != 0
    assert "mpiexec started this process as one of 2, but mpi4py cannot be imported" in done.stderr
    assert "pip install 'minires[mpi]'" in done.stderr


def test_in_one_process_the_collectives_leave_everything_as_it_is():
    minires.manual_seed(0)
    model = models.resnet20(width=4)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    grads = [np.random.default_rng(i).standard_normal(p.shape).astype(np.float32)
             for i, p in enumerate(model.parameters())]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.copy()
    distributed.broadcast_module(model)
    distributed.allreduce_gradients(model)
    for (name, value), before in zip(model.state_dict().items(), state.values()):
        np.testing.assert_array_equal(value, before, err_msg=name)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert distributed.main_process_result(lambda a, b: a + b, 2, b=3) == 5


# -- the loader's shards -----------------------------------------------------------------------
def _loader(images, labels, rank=0, world_size=1, drop_last=False):
    augment = data.Compose([data.RandomCrop(6, padding=2), data.RandomHorizontalFlip(), data.ToFloat()])
    return data.DataLoader((images, labels), 8, shuffle=True, drop_last=drop_last, transform=augment, seed=3,
                           rank=rank, world_size=world_size)


@pytest.mark.parametrize("world_size", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("drop_last", [False, True])
def test_the_shards_of_a_global_batch_make_up_the_one_process_batch(world_size, drop_last):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (21, 3, 6, 6), dtype=np.uint8), rng.integers(0, 10, 21)
    whole = list(_loader(images, labels, drop_last=drop_last))      # batches of 8, 8 and 5 (or 8, 8)
    shards = [list(_loader(images, labels, rank, world_size, drop_last)) for rank in range(world_size)]
    assert all(len(rank_batches) == len(whole) == (2 if drop_last else 3) for rank_batches in shards)
    for b, (batch_images, batch_labels) in enumerate(whole):
        sizes = [len(shards[rank][b][1]) for rank in range(world_size)]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
        np.testing.assert_array_equal(np.concatenate([shards[r][b][0] for r in range(world_size)]), batch_images)
        np.testing.assert_array_equal(np.concatenate([shards[r][b][1] for r in range(world_size)]), batch_labels)


def test_64_over_3_ranks_is_22_21_21():
    images, labels = np.zeros((64, 3, 2, 2), np.uint8), np.arange(64) % 10
    assert [data.DataLoader((images, labels), 64, rank=r, world_size=3).shard(64) for r in range(3)] == \
        [(0, 22), (22, 43), (43, 64)]


@pytest.mark.parametrize("options, message", [
    (dict(rank=2, world_size=2), "a rank in 0..world_size-1, got rank 2 and world_size 2"),
    (dict(rank=0, world_size=0), "world_size >= 1"),
    (dict(rank=-1, world_size=2), "got rank -1"),
    (dict(batch_size=2, world_size=3, rank=0), "a batch of 2 cannot be shared by 3 processes"),
])
def test_loader_refuses_bad_shards(options, message):
    images, labels = np.zeros((4, 3, 2, 2), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=message):
        data.DataLoader((images, labels), **{"batch_size": 4, **options})


# -- the synchronised batch norm's arithmetic, through the one-process group -------------------
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (1, 3, 2, 2), (7, 3), (2, 3, 9)], ids=str)
@pytest.mark.parametrize("momentum", [0.1, 0.4])
def test_sync_arithmetic_matches_torch_batch_norm(shape, momentum):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 2 + 1.5
    dy = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    reference = torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64) if len(shape) < 4 else \
        torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        for name, value in (("weight", gamma), ("bias", beta), ("running_mean", running_mean),
                            ("running_var", running_var)):
            getattr(reference, name).copy_(torch.from_numpy(value))
    y, cache = sync_batch_norm_forward(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                                       momentum=momentum, group=distributed.SingleProcessGroup())
    dx, dgamma, dbeta = sync_batch_norm_backward(dy, cache)
    tx = to_torch(x, requires_grad=True)
    ty = reference(tx)
    ty.backward(to_torch(dy))
    for ours, theirs, what in ((y, ty, "output"), (dx, tx.grad, "input gradient"),
                               (dgamma, reference.weight.grad, "weight gradient"),
                               (dbeta, reference.bias.grad, "bias gradient"),
                               (running_mean, reference.running_mean, "running_mean"),
                               (running_var, reference.running_var, "running_var")):
        assert_close(ours, theirs, what=what)


def test_sync_arithmetic_needs_two_values_per_channel_over_all_processes():
    with pytest.raises(ValueError, match=r"sync_batch_norm_forward: expected more than 1 value per channel "
                                         r"when training, got 1 over all 1 processes \(input of shape \(1, 3\)"):
        sync_batch_norm_forward(np.ones((1, 3)), None, None)


def test_sync_arithmetic_keeps_float32():
    x = np.random.default_rng(3).standard_normal((4, 2, 3, 3)).astype(np.float32)
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    y, cache = sync_batch_norm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), running_mean=running_mean,
                                       running_var=running_var)
    grads = sync_batch_norm_backward(np.ones_like(y), cache)
    assert all(a.dtype == np.float32 for a in (y, *grads, running_mean, running_var))


# -- the layer and the conversion -------------------------------------------------------------
def test_in_one_process_sync_batch_norm_is_batch_norm_bit_for_bit():
    rng = np.random.default_rng(4)
    plain, sync = nn.BatchNorm2d(3, momentum=None), nn.SyncBatchNorm(3, momentum=None)
    for layer in (plain, sync):
        layer.weight.data[...] = [0.5, 1.0, 2.0]
    for training in (True, True, False):
        x, dy = rng.standard_normal((4, 3, 5, 5)).astype(np.float32), rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
        results = []
        for layer in (plain, sync):
            layer.train(training)
            layer.zero_grad()
            results.append((layer(x), layer.backward(dy), layer.weight.grad, *layer.buffers()))
        for ours, theirs in zip(*results):
            np.testing.assert_array_equal(ours, theirs)


def test_sync_batch_norm_takes_the_inputs_of_batch_norm_1d_and_2d_and_refuses_others():
    layer = nn.SyncBatchNorm(3)
    for shape in ((4, 3), (4, 3, 5), (2, 3, 2, 2)):
        assert layer(np.ones(shape, np.float32)).shape == shape
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(3.*\(N, C\), \(N, C, L\) or \(N, C, H, W\)"):
        layer(np.ones((1, 2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="SyncBatchNorm.*channels"):
        layer(np.ones((2, 4, 3, 3), np.float32))


def test_convert_sync_batchnorm_keeps_names_state_parameters_and_mode():
    minires.manual_seed(0)
    model = models.resnet20(width=4)
    model(np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32))  # running stats move
    model.layer2.eval()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    parameters = dict(model.named_parameters())
    old_layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert nn.convert_sync_batchnorm(model) is model
    new_layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.SyncBatchNorm)}
    assert sorted(new_layers) == sorted(old_layers) and len(new_layers) == 19
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert list(model.state_dict()) == list(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    assert all(p is parameters[name] for name, p in model.named_parameters())  # an optimizer keeps working
    for name, layer in new_layers.items():
        old = old_layers[name]
        assert (layer.eps, layer.momentum, layer.affine, layer.track_running_stats, layer.training) == \
            (old.eps, old.momentum, old.affine, old.track_running_stats, old.training)


def test_convert_sync_batchnorm_of_a_batch_norm_and_of_odd_options():
    layer = nn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False, track_running_stats=False)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(layer)
    assert isinstance(sync, nn.SyncBatchNorm) and sync.weight is None and sync.running_mean is None
    assert (sync.eps, sync.momentum, list(sync.state_dict())) == (1e-3, None, [])
    no_bias = nn.convert_sync_batchnorm(nn.BatchNorm2d(2, bias=False))
    assert no_bias.bias is None and list(no_bias.state_dict()) == list(nn.BatchNorm2d(2, bias=False).state_dict())
