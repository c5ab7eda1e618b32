"""Numerical gradient checks: is a hand-written backward pass right?

For a function ``y = f(x)`` and an upstream gradient ``dy = dL/dy`` the backward pass must give

    dx = dL/dx = J(x)^T dy,        i.e.  dx_i = d/dx_i  sum_j f(x)_j dy_j.

The right-hand side can be measured without any calculus, by central differences:

    dx_i ~ [ g(x + eps e_i) - g(x - eps e_i) ] / (2 eps),     g(x) = sum(f(x) * dy),

whose error is O(eps^2): in float64 with eps = 1e-6 the two agree to ~1e-9 relative.

Two rules make the check strict:
- float64 throughout (in float32 the rounding error of the difference swamps the signal);
- a *random* upstream gradient ``dy``. With ``dy`` all ones, ``sum(dy * dBN(x)/dx) = 0``
  for a batch norm and a backward that returns zeros would pass.

The relative error reported for each array is ``|a - n| / max(|a| + |n|, tiny)`` with
Euclidean norms over the whole array; a check passes below ``tol`` (1e-6 by default).

``python -m minires.gradcheck`` checks every layer and block and exits 1 on any failure
(``--only NAME``: one layer or block; ``--demo-failure``: what failures look like; ``--help``).
"""
import argparse
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np

from .backend import asnumpy, get_array_module
from .grad_mode import no_grad


def numerical_gradient(f, x, dy, eps=1e-6):
    """Central-difference estimate of ``d sum(f(x) * dy) / dx``.

    ``f`` takes no argument and reads ``x``, which is perturbed in place one element at a
    time and restored (so ``x`` must be a contiguous float64 array that ``f`` sees).
    """
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous, so that its flat view is x itself")
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i].copy()
        flat_x[i] = original + eps
        plus = float(xp.sum(f() * dy))
        flat_x[i] = original - eps
        minus = float(xp.sum(f() * dy))
        flat_x[i] = original
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numerical):
    """``||a - n|| / (||a|| + ||n||)``; 0 when both are exactly zero."""
    a, n = asnumpy(analytic).astype(np.float64), asnumpy(numerical).astype(np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denominator == 0 else float(np.linalg.norm(a - n) / denominator)


@dataclass
class Entry:
    """One checked array: an input or a parameter."""
    name: str
    shape: tuple
    analytic_norm: float
    numerical_norm: float
    max_abs_error: float
    rel_error: float
    ok: bool


@dataclass
class Report:
    """The result of a gradient check: ``.ok`` and a table (``str(report)``)."""
    title: str
    entries: list = field(default_factory=list)
    tol: float = 1e-6

    @property
    def ok(self):
        return bool(self.entries) and all(e.ok for e in self.entries)

    def add(self, name, analytic, numerical):
        a, n = asnumpy(analytic), asnumpy(numerical)
        if a.shape != n.shape:
            raise ValueError(f"gradcheck: analytic gradient of {name} has shape {a.shape}, "
                             f"the input has {n.shape}")
        rel = relative_error(a, n)
        self.entries.append(Entry(name, tuple(n.shape), float(np.linalg.norm(a)), float(np.linalg.norm(n)),
                                  float(np.max(np.abs(a - n), initial=0.0)), rel, rel <= self.tol))

    def __bool__(self):
        return self.ok

    def __str__(self):
        header = (f"{'gradient of':<22}{'shape':<20}{'||analytic||':>13}{'||numerical||':>14}{'max abs err':>13}"
                  f"{'rel err':>10}  ok")
        rows = [f"{e.name:<22}{str(e.shape):<20}{e.analytic_norm:>13.4e}{e.numerical_norm:>14.4e}"
                f"{e.max_abs_error:>13.2e}{e.rel_error:>10.1e}  {'yes' if e.ok else 'NO'}" for e in self.entries]
        verdict = "PASS" if self.ok else "FAIL"
        return "\n".join([f"{self.title}: {verdict} (tolerance {self.tol:g})", header, *rows])


def _float64_copy(x):
    return get_array_module(x).array(x, dtype=np.float64, order="C", copy=True)


def _random_like(y, rng):
    return get_array_module(y).asarray(rng.standard_normal(y.shape))


def check_function(forward, backward, inputs, tol=1e-6, eps=1e-6, seed=0, names=None, title=None):
    """Check ``backward(dy, cache)`` against central differences of ``forward(*inputs)``.

    ``forward(*inputs) -> (y, cache)``; ``backward(dy, cache)`` returns one gradient or a tuple,
    one per input (``None`` for inputs without a gradient). Float arrays among ``inputs`` are
    checked (after conversion to float64); anything else (ints, labels, ``None``) is passed as is.
    """
    rng = np.random.default_rng([seed, 0x6D72])  # its own stream: dy never equals an input drawn from seed
    inputs = [_float64_copy(v) if hasattr(v, "dtype") and v.dtype.kind == "f" else v for v in inputs]
    names = names or [f"input {i}" for i in range(len(inputs))]
    y, cache = forward(*inputs)
    dy = _random_like(y, rng)
    grads = backward(dy, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    report = Report(title or getattr(forward, "__name__", "function"), tol=tol)
    for name, value, grad in zip(names, inputs, grads):
        if hasattr(value, "dtype") and value.dtype.kind == "f" and grad is not None:
            numerical = numerical_gradient(lambda: forward(*inputs)[0], value, dy, eps)
            report.add(name, grad, numerical)
    return report


def check_module(module, x, tol=1e-6, eps=1e-6, seed=0, title=None):
    """Check ``module.backward`` (input gradient and every parameter's ``.grad``) in float64.

    ``x`` is an array or a tuple of arrays. The module is converted to float64 in place
    (``module.to(dtype=np.float64)``); its buffers (running statistics) are restored after
    the numerical passes. The module must be deterministic (``Dropout``: check it in
    ``eval`` mode, or check ``dropout_forward`` with a fixed mask via ``check_function``).
    """
    rng = np.random.default_rng([seed, 0x6D72])  # its own stream: dy never equals an input drawn from seed
    module.to(dtype=np.float64)
    inputs = tuple(_float64_copy(v) for v in (x if isinstance(x, tuple) else (x,)))
    buffers = {name: b.copy() for name, b in module.state_dict().items() if name not in dict(module.named_parameters())}

    y = module(*inputs)
    dy = _random_like(y, rng)
    module.zero_grad()
    grad_inputs = module.backward(dy)
    grad_inputs = grad_inputs if isinstance(grad_inputs, tuple) else (grad_inputs,)
    params = list(module.named_parameters())
    analytic_params = [None if p.grad is None else p.grad.copy() for _, p in params]

    def output():
        with no_grad():
            return module(*inputs)

    report = Report(title or module.extra_name(), tol=tol)
    for i, (value, grad) in enumerate(zip(inputs, grad_inputs)):
        report.add("input" if len(inputs) == 1 else f"input {i}", grad, numerical_gradient(output, value, dy, eps))
    for (name, p), grad in zip(params, analytic_params):
        numerical = numerical_gradient(output, p.data, dy, eps)
        report.add(name, get_array_module(numerical).zeros_like(numerical) if grad is None else grad, numerical)
    module.load_state_dict({**module.state_dict(), **buffers})
    return report


LEGEND = """\
How to read the tables:
  ||a||          the Euclidean norm of an array, over all its elements
  analytic       the gradient from the hand-written backward pass
  numerical      central differences: [g(x + eps e_i) - g(x - eps e_i)] / (2 eps), g(x) = sum(f(x) * dy),
                 eps = 1e-6, with a random upstream gradient dy (with dy = 1 a backward that ignores dy
                 would pass)
  max abs err    max_i |analytic_i - numerical_i|
  rel err        ||analytic - numerical|| / (||analytic|| + ||numerical||), 0 when both are 0
  ok             rel err <= the tolerance, {tol:g}
Why float64: rounding g(x +- eps e_i) to the working precision u adds about u / eps (relative to
the size of g) to each difference quotient. In float64, u = 1e-16: 1e-16 / 1e-6 = 1e-10, and the
truncation error, O(eps^2) = 1e-12, is smaller still, so a right backward agrees to about 1e-9, far
below the tolerance. In float32, u = 6e-8: the rounding alone would be about 0.06, and every check
would look wrong."""


def _parse_args(argv, names):
    parser = argparse.ArgumentParser(
        prog="python -m minires.gradcheck",
        description="Numerical gradient checks (float64, central differences, a random upstream gradient) "
                    "of every layer and block of minires: a table per check, exit code 1 on any failure.")
    parser.add_argument("--only", metavar="NAME", help="check only this layer or block (case does not matter): "
                                                       + ", ".join(names))
    parser.add_argument("--demo-failure", action="store_true",
                        help="show what failures look like: three deliberately broken backward passes (a ReLU "
                             "that ignores its upstream gradient, a bias gradient averaged instead of summed, a "
                             "residual block that forgets its skip path); exits 1, as a real failure would")
    args = parser.parse_args(argv)
    if args.only is not None and args.only.lower() not in {name.lower() for name in names}:
        parser.error(f"--only: no layer or block named {args.only!r}; choose from {', '.join(names)}")
    return args


def _main(argv=None):
    from ._gradcheck_cases import all_cases, broken_cases
    from .random import manual_seed
    cases = all_cases()
    names = list(dict.fromkeys(name for name, _ in cases))
    args = _parse_args(argv, names)
    manual_seed(0)  # the modules' weights too: the same table on every run
    if args.demo_failure:
        print("What a failing gradient check looks like: three backward passes, each with a classic mistake.\n")
        reports = []
        for mistake, check in broken_cases():
            reports.append(check())
            print(textwrap.fill(mistake, width=100) + f"\n{reports[-1]}\n")
    else:
        reports = [check() for name, check in cases if args.only is None or name.lower() == args.only.lower()]
        for report in reports:
            print(report, end="\n\n")
    failed = [r.title for r in reports if not r.ok]
    print(f"{len(reports) - len(failed)} passed, {len(failed)} failed\n")
    print(LEGEND.format(tol=reports[0].tol))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
