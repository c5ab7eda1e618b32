# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Your own layers: write them, check them, train with them
#
# The exercise sheet (`python -m minires.exercises`) asks you for the backward passes of six layers
# — ReLU, linear, softmax cross-entropy, max pooling, batch norm, convolution — and then for a
# residual block built from them. This notebook walks through it:
#
# 1. **write** the layers in the sheet (in your editor, or in Jupyter's),
# 2. **grade** them, and **gradient-check** them yourself with `minires.gradcheck`,
# 3. **train** a small convolutional network built from *your* layers on a CIFAR-10 subset, and
#    the same network with minires' layers, from the same start on the same batches: if your
#    layers are right, the two runs agree to rounding error,
# 4. **wire** your layers into a residual block (exercise 7).
#
# Questions marked **Why?** have their answer in the collapsed cell below them.

# %%
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from minires import gradcheck
from minires.exercises import grade_directory, sheet_toolbox, start, toolbox

sys.path.insert(0, str(Path.cwd().parent))   # demos/: the data helpers the study demos use
import study_common  # noqa: E402

# %% [markdown]
# ## 1. The sheet
#
# Your sheet is the folder `my_exercises` next to this notebook (the cell below writes it the first
# time; `python -m minires.exercises start my_exercises` does the same from a shell). Open
# `my_exercises/README.md` and `ex1_relu.py`, and replace each `raise NotImplementedError` by your
# code. (When this notebook runs in the project's tests, `MINIRES_EXERCISES` points at the
# reference solutions instead, which then play your part.)

# %%
sheet = Path(os.environ.get("MINIRES_EXERCISES", "my_exercises"))
if not sheet.exists():
    start(sheet)
print("your sheet:", sheet.resolve())

# %% [markdown]
# ## 2. Grade, then check for yourself
#
# The grader runs numerical gradient checks, compares with minires' layers, and recognises the
# usual mistakes. Rerun this cell whenever you have changed a file (it reads the files afresh);
# from a shell, `python -m minires.exercises check my_exercises` does the same.

# %%
results = grade_directory(sheet, ["1", "2", "3", "4", "5", "6"])
for result in results:
    print(result if not result.passed else f"Exercise {result.number} -- {result.title}: PASS", end="\n\n")

# %% [markdown]
# The grader's main tool is one you can use directly: `gradcheck.check_function(forward, backward,
# inputs)` compares your backward with central differences of your forward, in float64, with a
# random upstream gradient. Here it checks your convolution (stride 2, padding 1) and your batch
# norm. `layers` holds your functions where your exercise passes, and minires' where it does not
# yet (the note says which).

# %%
layers, note = sheet_toolbox(sheet)
print("layers", note, "\n")
rng = np.random.default_rng(0)
x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
print(gradcheck.check_function(layers.conv2d_forward, layers.conv2d_backward, [x, w, b, 2, 1],
                               names=["x", "w", "b", "stride", "padding"], title="your conv2d"), "\n")
gamma, beta = 1 + rng.standard_normal(4), rng.standard_normal(4)
print(gradcheck.check_function(layers.batch_norm_forward, layers.batch_norm_backward,
                               [rng.standard_normal((3, 4, 2, 2)), gamma, beta],
                               names=["x", "gamma", "beta"], title="your batch norm"))

# %% [markdown]
# **Why?** The check draws a *random* upstream gradient `dy` instead of using `dy = 1`. What would
# a check with `dy = 1` miss in a batch norm's backward?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** With `dy = 1` the check differentiates $L = \sum y = \sum \gamma \hat x + \beta$. But
# $\hat x$ sums to zero over every channel whatever $x$ is, so $\partial L/\partial x = 0$ exactly:
# a backward that returns `np.zeros_like(x)` would pass, and so would many wrong ones. It would also
# miss a backward that ignores `dy` altogether (a ReLU that returns its mask). A random `dy` tests
# $J^\top v$ for a $v$ that has no such special structure.

# %% [markdown]
# **Why?** The check runs in float64, and the tolerance is $10^{-6}$ on the relative error. What
# would go wrong in float32?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** The numerical gradient is $[g(x + \epsilon) - g(x - \epsilon)] / 2\epsilon$ with
# $\epsilon = 10^{-6}$. Rounding $g$ to the working precision $u$ adds an error of about
# $u/\epsilon$: $10^{-16}/10^{-6} = 10^{-10}$ in float64, but $6\cdot 10^{-8}/10^{-6} \approx 0.06$
# in float32 — a right backward would look wrong. (A larger $\epsilon$ trades rounding for
# truncation error, $O(\epsilon^2)$; float64 makes both tiny.) `python -m minires.gradcheck --help`
# and the legend under its tables say the same.

# %% [markdown]
# ## 3. Train a small network built from your layers
#
# conv 3→8 (3×3) → batch norm → ReLU → max pool 2 → conv 8→16 → batch norm → ReLU → max pool 2
# → linear 1024→10 → softmax cross-entropy; plain SGD with momentum. Everything is written out
# below: the forward pass keeps each layer's cache, the backward pass hands each layer its upstream
# gradient and collects the parameters' gradients. The same code runs twice: with `layers` (yours)
# and with `toolbox()` (minires' functions under the sheet's names).

# %%
TRAIN_IMAGES, TEST_IMAGES, BATCH, EPOCHS, LR, MOMENTUM = 2000, 500, 50, 2, 0.01, 0.9

train_set, test_set, source = study_common.cifar_or_stand_in(TRAIN_IMAGES, TEST_IMAGES)
print("data:", source)

def as_arrays(dataset):
    images = study_common.NORMALIZE(dataset.data, None).astype(np.float64)   # float64: compare to rounding
    return images, np.asarray(dataset.targets)

train_x, train_y = as_arrays(train_set)
test_x, test_y = as_arrays(test_set)


def initial_parameters(seed=0):
    """He initialisation for the convolutions, 1/sqrt(fan_in) for the classifier."""
    rng = np.random.default_rng(seed)
    he = lambda *shape: rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))  # noqa: E731
    return {"w1": he(8, 3, 3, 3), "gamma1": np.ones(8), "beta1": np.zeros(8),
            "w2": he(16, 8, 3, 3), "gamma2": np.ones(16), "beta2": np.zeros(16),
            "w3": rng.standard_normal((10, 16 * 8 * 8)) / np.sqrt(16 * 8 * 8), "b3": np.zeros(10)}


def forward(layers, p, x, labels):
    """The loss, the scores and every layer's cache."""
    c = {}
    h, c["conv1"] = layers.conv2d_forward(x, p["w1"], None, 1, 1)
    h, c["bn1"] = layers.batch_norm_forward(h, p["gamma1"], p["beta1"])
    h, c["relu1"] = layers.relu_forward(h)
    h, c["pool1"] = layers.max_pool_forward(h, 2, 2)
    h, c["conv2"] = layers.conv2d_forward(h, p["w2"], None, 1, 1)
    h, c["bn2"] = layers.batch_norm_forward(h, p["gamma2"], p["beta2"])
    h, c["relu2"] = layers.relu_forward(h)
    h, c["pool2"] = layers.max_pool_forward(h, 2, 2)
    c["pooled_shape"] = h.shape
    scores, c["fc"] = layers.linear_forward(h.reshape(len(h), -1), p["w3"], p["b3"])
    loss, c["loss"] = layers.softmax_cross_entropy_forward(scores, labels)
    return float(loss), scores, c


def backward(layers, c):
    """The gradient of every parameter, layer by layer from the loss back to the input."""
    g = {}
    dscores = layers.softmax_cross_entropy_backward(np.asarray(1.0), c["loss"])
    dh, g["w3"], g["b3"] = layers.linear_backward(dscores, c["fc"])
    dh = layers.max_pool_backward(dh.reshape(c["pooled_shape"]), c["pool2"])
    dh = layers.relu_backward(dh, c["relu2"])
    dh, g["gamma2"], g["beta2"] = layers.batch_norm_backward(dh, c["bn2"])
    dh, g["w2"], _ = layers.conv2d_backward(dh, c["conv2"])        # no bias: ignore db
    dh = layers.max_pool_backward(dh, c["pool1"])
    dh = layers.relu_backward(dh, c["relu1"])
    dh, g["gamma1"], g["beta1"] = layers.batch_norm_backward(dh, c["bn1"])
    _, g["w1"], _ = layers.conv2d_backward(dh, c["conv1"])
    return g


def train(layers):
    """SGD with momentum from the same start on the same batches; returns the parameters and the losses."""
    p = initial_parameters()
    velocity = {name: np.zeros_like(value) for name, value in p.items()}
    order = np.random.default_rng(1).permutation(np.tile(np.arange(len(train_x)), EPOCHS))
    losses = []
    for start in range(0, len(order) - BATCH + 1, BATCH):
        batch = order[start:start + BATCH]
        loss, _, caches = forward(layers, p, train_x[batch], train_y[batch])
        for name, grad in backward(layers, caches).items():
            velocity[name] = MOMENTUM * velocity[name] - LR * grad
            p[name] += velocity[name]
        losses.append(loss)
    return p, np.array(losses)


def accuracy(layers, p, x, labels, batch=250):
    """Test accuracy; batch norm uses each test batch's own statistics (there are no running ones here)."""
    hits = [np.argmax(forward(layers, p, x[i:i + batch], labels[i:i + batch])[1], axis=1) == labels[i:i + batch]
            for i in range(0, len(x), batch)]
    return float(np.mean(np.concatenate(hits)))


yours, your_losses = train(layers)
minires_params, minires_losses = train(toolbox())
print(f"{len(your_losses)} steps of {BATCH} images; loss {your_losses[0]:.3f} -> {your_losses[-10:].mean():.3f} "
      "(mean of the last 10 steps)")
print(f"test accuracy on {TEST_IMAGES} images: yours {accuracy(layers, yours, test_x, test_y):.1%}, "
      f"minires' {accuracy(toolbox(), minires_params, test_x, test_y):.1%}")
difference = np.abs(your_losses - minires_losses)
print(f"largest difference between the two loss curves: {difference.max():.2e}")
assert difference.max() < 1e-6, "your layers train differently from minires': grade them again"

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
left.plot(your_losses, label="your layers")
left.set(xlabel="SGD step", ylabel="training loss (one batch)", title=f"training on {source.split(':')[0]}")
left.legend()
right.semilogy(np.maximum(difference, 1e-18), color="tab:red")
right.set(xlabel="SGD step", ylabel="|your loss - minires' loss|",
          title="the two runs differ only by rounding (1e-18: equal)")
for ax in (left, right):
    ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The left panel draws your run only: minires' run would lie exactly on top of it, which is what
# the right panel shows — the difference between the two, step by step, on a log scale. (On the
# stand-in images, each class a fixed template plus noise, the network soon classifies every test
# image right; on real CIFAR-10 a thousand images and two epochs leave it far from that.)

# %% [markdown]
# **Why?** If your layers are right, why do the two runs still not agree *exactly*?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** Both compute the same formulas, but not in the same order: minires' im2col lays out
# each window as (i, j, c) where the sheet's is (c, i, j), so the matrix products add their terms
# in another order; minires' batch norm sums its statistics in blocks. Floating-point addition is
# not associative, so the results differ in the last bits, about $10^{-16}$ relative. Training
# feeds each step's result into the next, so such differences could grow over many steps in a
# chaotic network; in this small one they stay at the level of rounding. A mistake, in contrast,
# shows at the very first step.

# %% [markdown]
# **Why?** This network evaluates with the test batch's own batch-norm statistics. Why is that not
# what a trained network does at test time, and what does minires' `BatchNorm2d` do instead?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** With batch statistics, an image's prediction depends on the other images in its
# batch, and a single image could not be classified at all. `BatchNorm2d` keeps running averages
# of the mean and of the (unbiased) variance during training and normalises with them in `eval()`
# mode, as PyTorch does; the exercise's batch norm leaves them out to keep the backward the point.

# %% [markdown]
# ## 4. Your layers in a residual block
#
# Exercise 7 wires a residual block — with an identity shortcut and with a projection shortcut
# (1×1 convolution + batch norm, stride 2) — from your ReLU, batch norm and convolution. The
# grader uses yours when they pass, and says so in a note.

# %%
print(grade_directory(sheet, ["7"])[0])
