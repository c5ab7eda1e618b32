"""Data-parallel training over MPI: K processes, a replica of the model in each, one global batch.

    mpiexec -n 2 python demos/train_cifar_resnet18.py ...       # 2 processes on this machine
    mpiexec -f hostfile -n 8 python demos/train_cifar_resnet18.py ...   # 8 over several machines

``mpiexec`` comes with the ``mpich`` package of the ``[mpi]`` extra (no system MPI needed). Each
process, a *rank* ``r`` in ``0..K-1``, holds the whole model and trains on its shard of every
global batch of ``N`` samples: ``n_r`` of them, ``n_0 + ... + n_{K-1} = N`` (the loader splits a
batch as evenly as it can: 64 over 3 ranks is 22/21/21; in training no shard may be empty, so the
loader refuses batches smaller than K, and a training loader drops its last partial batch, as the
demo's does). A run is distributed when ``mpiexec``
started it, which its environment tells (``PMI_SIZE`` for MPICH, ``OMPI_COMM_WORLD_SIZE`` for
Open MPI); otherwise everything runs as one process of world size 1 and mpi4py is never imported.

What is combined, and why. The loss of a step is the mean over the *global* batch,

    L = (1/N) sum_i l_i = sum_r (n_r / N) L_r,        L_r = (1/n_r) sum_{i in shard r} l_i,

so ``dL/dtheta = sum_r (n_r/N) dL_r/dtheta``. Each rank scales the gradient that starts its
backward pass (``dL_r/dlogits``) by its share ``n_r / N``, and after backward the ranks' parameter
gradients are *summed* (``allreduce_gradients``: a few flat buckets, one in-place ``Allreduce``
each, not one per parameter). With equal shards that is the plain mean of the ranks' gradients,
as PyTorch's DistributedDataParallel computes. Scaling ``dlogits`` rather than the finished
parameter gradients gives the same result for layers that treat samples independently (backward is
linear in ``dy``) and is what keeps ``nn.SyncBatchNorm`` exact with unequal shards: its backward sums
``dy`` over all ranks, and those ``dy`` must all be gradients of the same ``L``.

The rest follows from "every rank must hold the same model":

- parameters and buffers start as rank 0's (``broadcast_module``), whatever each rank's seed;
- the printed loss and accuracy are the global batch's (``sum_over_processes``), and so is the
  non-finite-loss guard's loss: every rank stops at the same step, none is left waiting;
- rank 0 reads files (a checkpoint on ``--resume``) and broadcasts what it read
  (``main_process_result``): no file system shared between machines is assumed;
- without synchronised batch norm each rank's running statistics follow its own shards and drift
  apart: ``broadcast_buffers`` gives every rank rank 0's before evaluating and checkpointing (as
  DistributedDataParallel broadcasts buffers);
- only rank 0 prints and writes files (``is_main_process``).

Failure. A rank that dies while the others wait in a collective would leave them waiting forever.
So when MPI starts, an exception that reaches the top of any rank prints ``rank r of K failed``
with its traceback and calls ``MPI_Abort``: ``mpiexec`` ends every process within a second or two
and exits non-zero. A ``sys.exit`` is not an exception and is not caught: a program that turns
errors into a message and an exit status calls ``exit_all(message)`` instead, which does the same
for any number of processes. Files written atomically (checkpoints) keep their last complete version.

GPU. The MPI from the package index is not CUDA-aware: CuPy arrays are staged through host
memory (copied to NumPy, reduced or broadcast there, copied back to the device).
"""
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .backend import asnumpy, get_array_module

# How each launcher tells a process the number of processes it started.
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
# Gradients are reduced in flat buckets of about this size (PyTorch DDP's default, 25 MiB).
BUCKET_BYTES = 25 * 2 ** 20
INSTALL_HINT = "pip install 'minires[mpi]' (mpi4py and mpich)"


class SingleProcessGroup:
    """World size 1: every collective is the identity, nothing imports MPI."""

    rank, world_size = 0, 1
    seconds_communicating = 0.0

    def all_reduce(self, array):
        return array

    def broadcast(self, array, root=0):
        return array

    def broadcast_object(self, obj, root=0):
        return obj


class MPIProcessGroup:
    """The processes of ``MPI.COMM_WORLD``. Collectives work in place on NumPy or CuPy arrays.

    ``seconds_communicating`` adds up the time spent in collectives, waiting for the slowest rank
    included (the benchmarks report it as the communication's share of a step).
    """

    def __init__(self, MPI):
        self._MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self.seconds_communicating = 0.0

    def all_reduce(self, array):
        """``array`` replaced by its sum over all ranks (elementwise), in place; returns it."""
        return self._on_host(array, lambda buffer: self.comm.Allreduce(self._MPI.IN_PLACE, buffer))

    def broadcast(self, array, root=0):
        """``array`` overwritten with rank ``root``'s values, in place; returns it."""
        return self._on_host(array, lambda buffer: self.comm.Bcast(buffer, root=root))

    def broadcast_object(self, obj, root=0):
        """Rank ``root``'s ``obj`` on every rank (pickled: for the processes of one job only)."""
        start = time.perf_counter()
        obj = self.comm.bcast(obj, root=root)
        self.seconds_communicating += time.perf_counter() - start
        return obj

    def _on_host(self, array, collective):
        """Run ``collective`` on a contiguous host copy of ``array`` (none for contiguous NumPy
        arrays) and copy the result back: CuPy arrays are staged through host memory."""
        buffer = asnumpy(array)
        if not buffer.flags.c_contiguous:
            buffer = buffer.copy()
        start = time.perf_counter()
        collective(buffer)
        self.seconds_communicating += time.perf_counter() - start
        if buffer is not array:
            array[...] = get_array_module(array).asarray(buffer)
        return array

    def abort_on_uncaught_exception(self):
        """An exception that reaches the top of this rank names the rank and ends the whole job."""
        print_traceback = sys.excepthook

        def abort(kind, error, traceback):
            sys.stderr.write(f"minires.distributed: rank {self.rank} of {self.world_size} failed with "
                             f"{kind.__name__}: {error}; stopping all {self.world_size} processes\n")
            print_traceback(kind, error, traceback)
            abort_job(self.comm)

        sys.excepthook = abort


_group = None


def launcher_world_size(environ=None):
    """The number of processes ``mpiexec`` started, read from the environment; ``None`` without mpiexec."""
    environ = os.environ if environ is None else environ
    for name in _LAUNCHER_SIZE_VARIABLES:
        if name in environ:
            try:
                return int(environ[name])
            except ValueError:
                raise ValueError(f"minires.distributed: the launcher's {name} should be a number of "
                                 f"processes, got {environ[name]!r}") from None
    return None


def _start_mpi(size):
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"minires.distributed: mpiexec started this process as one of {size}, but "
                           f"mpi4py cannot be imported ({error}); {INSTALL_HINT}") from error
    group = MPIProcessGroup(MPI)
    if group.world_size != size:  # e.g. Open MPI's mpiexec with mpi4py on MPICH: K lone processes
        raise RuntimeError(f"minires.distributed: mpiexec started {size} processes but MPI sees "
                           f"{group.world_size}: this mpiexec does not belong to the MPI library of "
                           f"mpi4py (use the one installed with it, {mpiexec_path() or 'mpiexec'})")
    group.abort_on_uncaught_exception()
    return group


def get_group():
    """The process group of this run: MPI's when ``mpiexec`` started several processes, else world size 1."""
    global _group
    if _group is None:
        size = launcher_world_size()
        _group = SingleProcessGroup() if size in (None, 1) else _start_mpi(size)
    return _group


def rank():
    return get_group().rank


def world_size():
    return get_group().world_size


def is_main_process():
    """True on rank 0, the rank that prints and writes files."""
    return get_group().rank == 0


# -- what a data-parallel training loop combines ------------------------------------------------
def broadcast_module(model, root=0):
    """Every parameter and buffer of ``model`` overwritten with rank ``root``'s, in place."""
    group = get_group()
    for p in model.parameters():
        group.broadcast(p.data, root)
    broadcast_buffers(model, root)


def broadcast_buffers(model, root=0):
    """Every buffer of ``model`` (running statistics) overwritten with rank ``root``'s."""
    group = get_group()
    for buffer in model.buffers():
        group.broadcast(buffer, root)


def sum_over_processes(*numbers):
    """The sums over all ranks of a few numbers (losses, counts), as floats, in float64."""
    totals = np.array(numbers, dtype=np.float64)
    return tuple(get_group().all_reduce(totals).tolist())


def _buckets(parameters, bucket_bytes):
    """Consecutive parameters of one dtype, about ``bucket_bytes`` per group."""
    bucket, size = [], 0
    for p in parameters:
        if bucket and (p.grad.dtype != bucket[0].grad.dtype or size + p.grad.nbytes > bucket_bytes):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.grad.nbytes
    if bucket:
        yield bucket


def allreduce_gradients(model, bucket_bytes=BUCKET_BYTES):
    """Replace each trainable parameter's ``.grad`` by its sum over the ranks, in place.

    Gradients are copied into flat host buffers of about ``bucket_bytes``, each summed with one
    in-place ``Allreduce``, and copied back. The loop scales its ``dlogits`` by ``n_r / N``
    before backward, so the sum is the gradient of the mean loss over the global batch (see the
    top of this file). Every trainable parameter must have a gradient on every rank.
    """
    group = get_group()
    if group.world_size == 1:
        return
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    missing = [name for name, p in named if p.grad is None]
    if missing:
        raise RuntimeError(f"allreduce_gradients: rank {group.rank} has no gradient for "
                           f"{', '.join(missing)}; every trainable parameter must take part in the "
                           "forward and backward pass on every rank (or set requires_grad=False)")
    for bucket in _buckets([p for _, p in named], bucket_bytes):
        flat = np.empty(sum(p.grad.size for p in bucket), dtype=bucket[0].grad.dtype)
        ends = np.cumsum([p.grad.size for p in bucket])
        for p, end in zip(bucket, ends):
            flat[end - p.grad.size:end] = asnumpy(p.grad).reshape(-1)
        group.all_reduce(flat)
        for p, end in zip(bucket, ends):
            p.grad[...] = get_array_module(p.grad).asarray(flat[end - p.grad.size:end].reshape(p.grad.shape))


def main_process_result(function, *args, **kwargs):
    """``function(*args, **kwargs)`` run on rank 0 only, its result broadcast to every rank.

    For reading files that only rank 0 may see (a checkpoint). An exception on rank 0 is raised
    on every rank, so that they all stop together with the same message. ``function`` runs on
    rank 0 alone, so it must not itself call a collective (the others would never join it).
    """
    group = get_group()
    if group.world_size == 1:
        return function(*args, **kwargs)
    outcome = None
    if group.rank == 0:
        try:
            outcome = (True, function(*args, **kwargs))
        except Exception as error:  # every rank raises it below
            outcome = (False, error)
    succeeded, value = group.broadcast_object(outcome)
    if not succeeded:
        raise value
    return value


def exit_all(message):
    """``sys.exit(message)`` (the message on stderr, exit status 1), for every process of the run.

    With several processes this rank may fail alone while the others wait for it in a collective:
    the message names the rank, and ``MPI_Abort`` ends them all.
    """
    group = get_group()
    if group.world_size == 1:
        sys.exit(message)
    sys.stderr.write(f"{message} (rank {group.rank} of {group.world_size}; stopping all)\n")
    abort_job(group.comm)


def abort_job(comm):
    """``MPI_Abort`` after the message is out: the launcher forwards a rank's stderr through a pipe
    and kills every process at the abort, so a message still in that pipe would be lost; one second
    lets it arrive (without the pause, one CI run of the failing-rank test lost the message)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(1.0)
    comm.Abort(1)


# -- starting the processes ----------------------------------------------------------------------
def mpiexec_path():
    """The ``mpiexec`` beside this Python (the ``mpich`` package's, in a virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def relaunch(processes, argv):
    """Replace this process by ``mpiexec -n processes python argv...``; never returns when it can.

    Returns only when mpi4py or ``mpiexec`` is missing, so that the caller can go on in one
    process (and say how to get more).
    """
    mpiexec = mpiexec_path()
    if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(mpiexec, [mpiexec, "-n", str(processes), sys.executable, *argv])
