"""What test_mpi.py runs under a real mpiexec: ``mpiexec -n K python -m tests.support.mpi_scenarios SCENARIO``.

Every rank runs the scenario and sends its findings to rank 0, which prints one line
``RESULT {json}`` for the test to check. Everything is small (a ResNet-20 with 4 channels on 8x8
images, float64), so that the comparisons can be strict and K = 3 processes on 2 cores stay quick.
The global batches have 7 samples: unequal shards, 4/3 over 2 ranks and 3/2/2 over 3.
"""
import json
import sys

import numpy as np

import minires
from minires import distributed, models, nn, optim, train
from minires.gradcheck import numerical_gradient, relative_error

GLOBAL_BATCH, IMAGE_SIZE, STEPS = 7, 8, 3


def global_batches(steps, size=GLOBAL_BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, 3, IMAGE_SIZE, IMAGE_SIZE)), rng.integers(0, 10, size)) for _ in range(steps)]


def shard(batch, group):
    """This rank's part of a global batch: contiguous, the first ranks one larger (the loader's rule)."""
    return tuple(np.array_split(array, group.world_size)[group.rank] for array in batch)


def small_resnet(seed):
    minires.manual_seed(seed)
    return models.resnet20(width=4).double()


def sgd(model):
    return optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def one_process_step(model, optimizer, images, labels):
    """The plain one-process step on the whole global batch: the reference."""
    criterion = nn.CrossEntropyLoss()
    loss = float(criterion(model(images), labels))
    optimizer.zero_grad()
    model.backward(criterion.backward())
    optimizer.step()
    return loss


def state_errors(model, reference, names=None):
    """``||a - b|| / ||b||`` of every parameter and floating-point buffer (or of those ``names``);
    integer buffers must be equal (error 0, else infinite)."""
    errors, theirs = {}, reference.state_dict()
    for name, ours in model.state_dict().items():
        if names is not None and name not in names:
            continue
        if ours.dtype.kind == "f":
            errors[name] = float(np.linalg.norm(ours - theirs[name]) / np.linalg.norm(theirs[name]))
        else:
            errors[name] = 0.0 if np.array_equal(ours, theirs[name]) else float("inf")
    return errors


def report(group, findings):
    """Rank 0 prints every rank's findings as one JSON line."""
    everyone = group.comm.gather(findings, root=0)
    if group.rank == 0:
        print("RESULT " + json.dumps(everyone), flush=True)


# -- scenarios -------------------------------------------------------------------------------------
def synchronised(group):
    """SyncBatchNorm over K ranks against one process on the same global batches (float64), a
    gradient check of the layer across the ranks, and the broadcasts."""
    model = small_resnet(seed=100 + group.rank)  # a different start on every rank: the broadcast fixes it
    nn.convert_sync_batchnorm(model)
    distributed.broadcast_module(model)
    reference = small_resnet(seed=0)
    reference.load_state_dict(model.state_dict())
    optimizer, reference_optimizer = sgd(model), sgd(reference)
    loss_errors = []
    for batch in global_batches(STEPS):
        ours = train.train_one_epoch(model, [shard(batch, group)], nn.CrossEntropyLoss(), optimizer, progress=False)
        theirs = one_process_step(reference, reference_optimizer, *batch)
        loss_errors.append(abs(ours["loss"] - theirs) / abs(theirs))
    errors = state_errors(model, reference)
    return {"shard": len(shard(global_batches(1)[0], group)[1]), "loss_errors": loss_errors,
            "state_error": max(errors.values()), "worst": max(errors, key=errors.get),
            "gradcheck": sync_batch_norm_gradcheck(group), "broadcasts": broadcasts(group)}


def sync_batch_norm_gradcheck(group):
    """Central differences of the global loss sum_r <dy_r, y_r> of one SyncBatchNorm, perturbing one
    rank's input at a time (every rank runs each forward pass) and the shared weight and bias."""
    rng = np.random.default_rng(7)
    x_all, dy_all = rng.standard_normal((5, 3, 2, 3)) * 2 + 1, rng.standard_normal((5, 3, 2, 3))
    x, dy = np.array_split(x_all, group.world_size)[group.rank].copy(), np.array_split(dy_all, group.world_size)[group.rank]
    layer = nn.SyncBatchNorm(3).double()
    layer.weight.data[...], layer.bias.data[...] = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    layer(x)
    dx = layer.backward(dy)
    summed = [group.all_reduce(p.grad.copy()) for p in (layer.weight, layer.bias)]

    def global_loss():
        with minires.no_grad():
            return np.array(distributed.sum_over_processes(float(np.sum(layer(x) * dy)))[0])

    errors = {}
    for owner in range(group.world_size):
        owner_size = np.array_split(x_all, group.world_size)[owner].size
        if group.rank == owner:
            errors["input"] = relative_error(dx, numerical_gradient(global_loss, x, 1.0))
        else:
            for _ in range(2 * owner_size):  # the owner's perturbed forward passes
                global_loss()
    for name, p, analytic in (("weight", layer.weight, summed[0]), ("bias", layer.bias, summed[1])):
        errors[name] = relative_error(analytic, numerical_gradient(global_loss, p.data, 1.0))
    return errors


def broadcasts(group):
    """Rank 0's result reaches everyone; an exception on rank 0 is raised on every rank."""
    value = distributed.main_process_result(lambda: f"read by rank {group.rank}")
    try:
        distributed.main_process_result(lambda: int("a checkpoint only rank 0 can read"))
    except ValueError as error:
        raised = str(error)
    return {"value": value, "raised": raised}


def unsynchronised(group):
    """Plain batch norm: each rank's statistics are its shard's, and the gradient is the mean of the
    ranks' gradients (equal shards) or their n_r / N weighted sum (unequal shards)."""
    findings = {}
    for size in (8, GLOBAL_BATCH):
        batch = global_batches(1, size=size)[0]
        model = small_resnet(seed=group.rank)
        distributed.broadcast_module(model)
        start = {name: value.copy() for name, value in model.state_dict().items()}
        train.train_one_epoch(model, [shard(batch, group)], nn.CrossEntropyLoss(), sgd(model), progress=False)
        shards = [tuple(np.array_split(array, group.world_size)[r] for array in batch) for r in range(group.world_size)]
        alone = []  # each shard through its own one-process copy of the starting model
        for images, labels in shards:
            copy = small_resnet(seed=0)
            copy.load_state_dict(start)
            criterion = nn.CrossEntropyLoss()
            criterion(copy(images), labels)
            copy.backward(criterion.backward())
            alone.append(copy)
        weights = [len(labels) / size for _, labels in shards]
        expected = {name: sum(w * dict(c.named_parameters())[name].grad for w, c in zip(weights, alone))
                    for name, _ in model.named_parameters()}
        mean = {name: sum(dict(c.named_parameters())[name].grad for c in alone) / len(alone) for name in expected}
        errors = {name: float(np.linalg.norm(p.grad - expected[name]) / np.linalg.norm(expected[name]))
                  for name, p in model.named_parameters()}
        from_mean = {name: float(np.linalg.norm(p.grad - mean[name]) / np.linalg.norm(mean[name]))
                     for name, p in model.named_parameters()}
        own = state_errors(model, alone[group.rank], names=dict(model.named_buffers()))
        findings[f"batch {size}"] = {"gradient_error": max(errors.values()), "from_plain_mean": max(from_mean.values()),
                                     "own_buffers_error": max(own.values())}
    return findings


def fake_gpu(group):
    """SyncBatchNorm, the gradient all-reduce and the broadcasts on the CuPy stand-in's fake GPU
    (staged through host memory) give what they give on the CPU."""
    from minires import backend
    from minires.testing import fake_cupy
    images, labels = shard(global_batches(1)[0], group)
    results = {}
    with backend.substitute_cupy(fake_cupy):
        for device in ("cpu", "cuda"):
            model = nn.convert_sync_batchnorm(small_resnet(seed=group.rank)).to(device)
            distributed.broadcast_module(model)
            criterion = nn.CrossEntropyLoss()
            loss = criterion(model(backend.to_device(images, device)), backend.to_device(labels, device))
            dx = model.backward(criterion.backward())
            distributed.allreduce_gradients(model)
            results[device] = [loss, dx, *(p.grad for p in model.parameters()), *model.buffers()]
        on_the_gpu = all(isinstance(a, fake_cupy.ndarray) for a in results["cuda"])
        errors = [float(np.linalg.norm(g.get() - c) / max(np.linalg.norm(c), 1e-300))
                  for g, c in zip(results["cuda"], results["cpu"])]
    return {"all_on_the_gpu": on_the_gpu, "max_error": max(errors)}


def failing(group):
    """Rank 1 raises while rank 0 waits in its next all-reduce: the job must end, naming rank 1."""
    def fail():
        raise RuntimeError("rank 1 fails on purpose")

    all_reduce_until_rank_1_stops(fail)


def exiting(group):
    """Rank 1 exits with a message (a command line's one-line error) while rank 0 waits."""
    all_reduce_until_rank_1_stops(lambda: distributed.exit_all("error: rank 1 gives up"))


def all_reduce_until_rank_1_stops(stop):
    """All-reduce forever; at the fourth step rank 1 calls ``stop`` (rank 0 goes on waiting)."""
    for step in range(10 ** 9):
        if distributed.rank() == 1 and step == 3:
            stop()
        distributed.sum_over_processes(step)


SCENARIOS = {"synchronised": synchronised, "unsynchronised": unsynchronised, "fake_gpu": fake_gpu,
             "failing": failing, "exiting": exiting}

if __name__ == "__main__":
    group = distributed.get_group()
    report(group, SCENARIOS[sys.argv[1]](group))
