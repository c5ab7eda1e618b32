"""What both benchmarks share: worker processes, alternation, medians, peak memory, the tables.

Why worker processes. NumPy's OpenBLAS and PyTorch's OpenMP each keep a pool of threads that
spin for a while after a call; in one process the two pools fight over the cores (a PyTorch
ResNet-20 step was measured 6x slower beside an OpenBLAS pool than on its own). So every
measurement runs in a fresh Python process that imports one framework only, with the thread
count set in its environment before the import, and the parent alternates minires, torch,
minires, torch ... so that a change in the machine's load hits both alike. Each worker prints
one JSON line; the parent takes medians over the repeats.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

FRAMEWORKS = ("minires", "torch")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RESULT_MARK = "BENCHMARK-RESULT "
CHECKOUT = Path(__file__).resolve().parents[1]  # workers run from here: `benchmarks` and `tests` import


# -- the parent's side ------------------------------------------------------------------------------
def worker_environment(threads):
    """The parent's environment with every thread-count variable set to ``threads``."""
    env = dict(os.environ)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def run_worker(module, framework, config):
    """Run ``python -m module --worker framework config`` in a fresh process; its JSON result as a dict."""
    command = [sys.executable, "-m", module, "--worker", framework, json.dumps(config)]
    done = subprocess.run(command, env=worker_environment(config["threads"]), cwd=CHECKOUT,
                          capture_output=True, text=True)
    results = [line[len(RESULT_MARK):] for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not results:
        raise RuntimeError(f"the {framework} worker failed (exit code {done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return json.loads(results[-1])


def alternate(module, configs, repeats, describe=None):
    """Run the workers ``repeats`` times each, in the order minires, torch, minires, torch ...

    ``configs`` maps each framework to its worker's config; returns framework -> list of results.
    ``describe(framework, result)``, if given, makes the progress line printed to stderr.
    """
    results = {framework: [] for framework in FRAMEWORKS}
    for repeat in range(repeats):
        for framework in FRAMEWORKS:
            result = run_worker(module, framework, configs[framework])
            results[framework].append(result)
            note = f": {describe(framework, result)}" if describe else ""
            print(f"  repeat {repeat + 1}/{repeats} {framework:<7}{note}", file=sys.stderr, flush=True)
    return results


def median(values):
    return statistics.median(values)


def markdown_table(header, rows):
    """A plain Markdown table; every cell already a string."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parse_markdown_table(text):
    """The header and the rows of the first Markdown table in ``text`` (for the tests)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start:end]]
    return cells[0], cells[2:]


# -- the worker's side ------------------------------------------------------------------------------
def peak_rss_mb():
    """The process's peak resident memory so far, in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def argument_parser(doc, warmup, warmup_help):
    """The options both benchmarks share: batch size, alternating repeats, warm-up, threads."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="workers per framework, alternating")
    p.add_argument("--warmup", type=int, default=warmup, help=warmup_help)
    p.add_argument("--threads", type=int, default=2, help="threads for both frameworks")
    return p


def serve_as_worker(argv, worker):
    """``--worker FRAMEWORK CONFIG``: run one measurement as a worker process; True if it did."""
    if argv[:1] != ["--worker"]:
        return False
    report_result(worker(argv[1], json.loads(argv[2])))
    return True


def report_result(result):
    """The worker's last word: one marked JSON line on stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def blas_description():
    """NumPy's BLAS as seen from inside a worker that has imported NumPy."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import numpy as np
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except Exception:  # NumPy < 1.25 prints its configuration only
            return "unknown (install threadpoolctl to see it)"
        return f"{blas['name']} {blas.get('version', '')} (threadpoolctl not installed)"
    pools = [f"{pool['internal_api']} {pool['version']} ({pool.get('architecture')}, "
             f"{pool.get('threading_layer')}, {pool['num_threads']} threads)"
             for pool in threadpool_info() if pool["user_api"] == "blas"]
    return "; ".join(pools) or "none found"


def torch_description(torch):
    """PyTorch's version, thread count and parallel backend, from inside a torch worker."""
    backend = next((line.split(":", 1)[1].strip() for line in torch.__config__.parallel_info().splitlines()
                    if line.startswith("ATen parallel backend")), "unknown")
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {backend} parallel backend"


# -- the machine ---------------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor() or "unknown")
    except OSError:
        return platform.processor() or "unknown"


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(threads, worker_info, load_before, load_after):
    """Markdown bullet lines that say where and how the numbers were measured."""
    allocator = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs ({cores} usable by this process)",
        f"- Python {platform.python_version()}, numpy {_version('numpy')}, torch {_version('torch')}, "
        f"minires {_version('minires')}",
        f"- NumPy BLAS: {worker_info.get('minires', '?')}",
        f"- PyTorch: {worker_info.get('torch', '?')}",
        f"- threads: {threads} for both ({', '.join(THREAD_VARIABLES)} set in each worker's "
        f"environment before import; torch.set_num_threads({threads}))",
        "- allocator settings: " + (", ".join(f"{k}={v}" for k, v in sorted(allocator.items()))
                                    or "the defaults (no MALLOC_* or LD_PRELOAD set)") + ", same for both",
        f"- load average (1 min) before / after the run: {load_before:.2f} / {load_after:.2f}"
        + ("  **(other work was running: these timings are not reliable)**"
           if load_before > 0.5 * (os.cpu_count() or 1) else ""),
    ]


def command_line(module):
    """How this benchmark was started (from the checkout's root), to paste under its table."""
    return " ".join(["python -m", module, *sys.argv[1:]])
