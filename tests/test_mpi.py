"""Data-parallel training through a real ``mpiexec`` (the one of the ``mpich`` package), with timeouts.

K = 2 and 3 processes with SyncBatchNorm compute what one process computes on the same global
batches (float64, unequal shards, per tensor ||a - b|| / ||b|| <= 1e-10); the layer's gradient
checked by central differences across the ranks; without synchronisation the gradient is the
mean of the ranks' (n_r / N weighted for unequal shards) and each rank's batch norm sees its shard;
the CuPy stand-in's fake GPU staged through host memory; a failing rank ends the job; and the demo in 2
processes: rank 0's files, resume in 1 process, --eval-only in 1 process. MPICH's processes
busy-wait, so K = 3 on 2 cores is slow: the timeouts are generous, the work is small.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minires.testing.cifar_files import make_cifar_folder

pytest.importorskip("mpi4py", reason="the [mpi] extra (mpi4py, mpich) is not installed")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demos" / "train_cifar_resnet18.py"
SCENARIOS = "tests.support.mpi_scenarios"   # run as python -m SCENARIOS from the checkout's root
MPIEXEC = next((str(p) for p in [Path(sys.executable).parent / "mpiexec"] if p.is_file()), shutil.which("mpiexec"))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (the mpich package) beside this Python")


def environment():
    """This checkout first on the path, one BLAS thread, no launcher variables of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MPI_LOCAL"))}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env


def mpiexec(processes, *command, timeout=240):
    return subprocess.run([MPIEXEC, "-n", str(processes), sys.executable, *map(str, command)], env=environment(),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def scenario(name, processes):
    """Every rank's findings, from the RESULT line rank 0 prints."""
    done = mpiexec(processes, "-m", SCENARIOS, name)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout  # rank 0 alone prints
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.parametrize("processes, shards", [(2, [4, 3]), (3, [3, 2, 2])])
def test_synchronised_batch_norm_over_k_processes_is_one_process_on_the_global_batch(processes, shards):
    ranks = scenario("synchronised", processes)
    assert [rank["shard"] for rank in ranks] == shards
    for rank in ranks:
        assert max(rank["loss_errors"]) <= 1e-10
        assert rank["state_error"] <= 1e-10, rank["worst"]   # every parameter and buffer, per tensor
        assert all(error <= 1e-6 for error in rank["gradcheck"].values()), rank["gradcheck"]
        assert rank["broadcasts"] == {"value": "read by rank 0",
                                      "raised": "invalid literal for int() with base 10: "
                                                "'a checkpoint only rank 0 can read'"}


def test_without_sync_the_gradient_is_the_shard_weighted_mean_and_each_batch_norm_sees_its_shard():
    for rank in scenario("unsynchronised", 2):
        equal, unequal = rank["batch 8"], rank["batch 7"]
        assert equal["gradient_error"] <= 1e-12 and equal["from_plain_mean"] <= 1e-12   # 4 + 4: the plain mean
        assert unequal["gradient_error"] <= 1e-12 and unequal["from_plain_mean"] > 1e-3  # 4 + 3: weighted
        assert equal["own_buffers_error"] == unequal["own_buffers_error"] == 0.0


def test_the_fake_gpu_is_staged_through_host_memory():
    for rank in scenario("fake_gpu", 2):
        assert rank["all_on_the_gpu"] and rank["max_error"] <= 1e-10


@pytest.mark.parametrize("name, message", [
    ("failing", "minires.distributed: rank 1 of 2 failed with RuntimeError: rank 1 fails on purpose"),
    ("exiting", "error: rank 1 gives up (rank 1 of 2; stopping all)"),
])
def test_a_failing_rank_ends_the_job_and_names_itself(name, message):
    start = time.perf_counter()
    done = mpiexec(2, "-m", SCENARIOS, name, timeout=60)
    assert done.returncode != 0
    assert time.perf_counter() - start < 30
    assert message in done.stderr


# -- the demo -------------------------------------------------------------------------------------
def demo_module():
    spec = importlib.util.spec_from_file_location("train_cifar_resnet18", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for_first_epoch(process, run, timeout=240):
    """Kill the run (all its processes) as soon as its first epoch's files are written (the confusion
    matrix comes last; every file is written atomically)."""
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.json"
    while not ((run / "confusion_matrix.png").exists() and len(json.loads(metrics.read_text())) == 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first epoch did not finish in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    return process.communicate()[0]


def test_the_demo_in_two_processes_resumes_and_evaluates_in_one(tmp_path, capsys):
    make_cifar_folder(tmp_path / "data", per_batch=64)   # 320 training images: an epoch lasts a few seconds
    run = tmp_path / "run"
    common = ["--model", "resnet20", "--width", "4", "--batch-size", "32", "--data-dir", str(tmp_path / "data"),
              "--out", str(run), "--no-progress", "--epochs", "2"]
    # --processes 2 starts mpiexec itself; the run is killed once its first epoch is written
    process = subprocess.Popen([sys.executable, str(DEMO), *common, "--processes", "2"], env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    printed = wait_for_first_epoch(process, run)
    assert printed.count("in 2 processes (synchronised batch norm)") == 1   # rank 0 alone prints
    assert printed.count("epoch   1/2") == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "confusion_matrix.png",
                                                     "curves.png", "metrics.csv", "metrics.json"]
    first_epoch = json.loads((run / "metrics.json").read_text())[0]

    demo = demo_module()
    result = demo.main(common + ["--eval-only"])   # one process, the checkpoint of the two
    assert result["accuracy"] == first_epoch["test_accuracy"]
    history = demo.main(common + ["--resume"])      # one process finishes the run of two
    assert [row["epoch"] for row in history] == [1, 2] and history[0] == first_epoch
    assert "epoch   2/2" in capsys.readouterr().out


def test_processes_without_mpi_trains_in_one_process_with_a_hint(tmp_path, capsys, monkeypatch):
    make_cifar_folder(tmp_path / "data", per_batch=16)
    demo = demo_module()
    monkeypatch.setattr(demo.distributed, "relaunch", lambda processes, argv: None)  # as without mpi4py
    history = demo.main(["--model", "resnet20", "--width", "4", "--batch-size", "16", "--epochs", "1",
                         "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-progress",
                         "--processes", "2"])
    assert len(history) == 1
    out = capsys.readouterr().out
    assert "--processes 2: mpi4py and mpiexec not found, training in one process; for 2: pip install 'minires[mpi]'" in out


def test_processes_must_agree_with_mpiexec(monkeypatch):
    demo = demo_module()
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ValueError, match="--processes 3, but mpiexec started 2 processes"):
        demo.start_processes(demo.parse_args(["--processes", "3"]), [])
