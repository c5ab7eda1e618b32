"""The README's short snippets and quick commands run as printed.

Taken from README.md itself: the "A first look" code, the GradientFlow example, and the commands
of its ``bash`` blocks that finish in well under a minute (listed below, each with its exit code;
the test fails when one of them is no longer printed in the README). The commands run in a
temporary folder in which ``demos`` links to the checkout's, so that relative paths work as printed.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# (command as printed, exit code): in the order a reader would type them
QUICK_COMMANDS = [
    ("python -m minires.gradcheck", 0),
    ("python -m minires.gradcheck --only BatchNorm2d", 0),
    ("python -m minires.gradcheck --demo-failure", 1),            # three broken backward passes
    ("python demos/train_cifar_resnet18.py --help", 0),
    ("python -m minires.exercises start my_exercises", 0),
    ("python -m minires.exercises check my_exercises", 1),        # nothing written yet
    ("python -m minires.exercises check my_exercises 4", 1),
]


def code_block_after(heading, language):
    """The first ```language block after the line ``heading``."""
    rest = README[README.index(heading + "\n"):]
    return re.search(rf"```{language}\n(.*?)```", rest, re.S).group(1)


def bash_commands():
    """Every command line of the README's bash blocks, without its trailing comment."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    return {line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()}


def test_a_first_look_runs_as_printed():
    exec(compile(code_block_after("## A first look", "python"), "README: A first look", "exec"), {})


def test_the_gradient_flow_example_runs_as_printed(capsys):
    namespace = {}
    exec(compile(code_block_after("### 1. Watch the gradient: `minires.inspect`", "python"),
                 "README: GradientFlow", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "shortcut share" in printed and "layer3.8" in printed
    assert namespace["flow"].layers and namespace["loss"] > 0


def test_quick_commands_are_printed_in_the_readme():
    missing = [command for command, _ in QUICK_COMMANDS if command not in bash_commands()]
    assert not missing, f"no longer in the README's bash blocks: {missing}"


@pytest.mark.slow
def test_quick_commands_run_as_printed(tmp_path):
    (tmp_path / "demos").symlink_to(ROOT / "demos")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for command, exit_code in QUICK_COMMANDS:
        argv = shlex.split(command)
        result = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == exit_code, f"{command}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        if command == "python -m minires.gradcheck":
            assert "0 failed" in result.stdout and "How to read the tables" in result.stdout
    assert (tmp_path / "my_exercises" / "ex7_residual_block.py").exists()
