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
# # 3. Gradient flow in plain and residual networks
#
# He et al.'s CIFAR networks come in pairs: ResNet-$d$ and its *plain* twin, the same layers
# without the shortcuts (`residual=False`). In this notebook you watch the gradient travel back
# through both with `minires.inspect`, which hooks every layer and splits the gradient that reaches
# each residual block's input into the part that came through the branch and the part that came
# around it:
#
# $$\frac{\partial L}{\partial x} = \underbrace{F'(x)^\top g}_{\text{branch part}} +
# \underbrace{S'(x)^\top g}_{\text{shortcut part}}, \qquad
# \text{shortcut share} = \frac{\lVert S'(x)^\top g\rVert}{\lVert S'(x)^\top g\rVert +
# \lVert F'(x)^\top g\rVert},$$
#
# with $g$ the gradient at the block's add. The pictures are those of `demos/skip_connections.py`
# (the README shows them for depths 20, 56 and 110); here depths 20 and 56 on smaller batches, so
# that the notebook runs in about a minute. Questions marked **Why?** have their answer in the
# collapsed cell below them.

# %%
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from IPython.display import Image, display
from matplotlib.backends.backend_agg import FigureCanvasAgg

import minires
from minires import models
from minires.inspect import record_gradient_flow

sys.path.insert(0, str(Path.cwd().parent))   # demos/: the skip-connection demo and its data helpers
import skip_connections  # noqa: E402
import study_common  # noqa: E402

# the demo's settings, smaller: 10 SGD steps of 8 images at learning rate 0.02, 16 probe images
settings = SimpleNamespace(steps=10, batch_size=8, lr=0.02, probe=16, seed=0, device="cpu")
train_set, test_set, source = study_common.cifar_or_stand_in(settings.steps * settings.batch_size, settings.probe)
images = study_common.NORMALIZE(test_set.data, None)
labels = np.asarray(test_set.targets)
print("data:", source)
data_name = source.split(":")[0]   # "CIFAR-10" or "stand-in images", for the pictures' titles


def show(figure):
    """Draw one of the demo's figures (matplotlib Figure objects, not pyplot's) in the notebook."""
    png = io.BytesIO()
    FigureCanvasAgg(figure).print_png(png)
    display(Image(png.getvalue()))

# %% [markdown]
# ## One measurement, by hand
#
# `record_gradient_flow` runs one forward and one backward pass with hooks on every layer and
# leaves the model as it was (weights, gradients, running statistics). Its table lists, per block,
# the norms of the input gradient and of its two parts, and the shortcut share.

# %%
minires.manual_seed(0)
resnet20 = models.resnet20()
flow = record_gradient_flow(resnet20, images, labels, keep_gradients=True)
print(f"loss {flow.loss:.3f}\n")
print(flow.table(layers=False))

# %% [markdown]
# The split is exact, not an estimate: with `keep_gradients=True` the flow keeps the three arrays
# of each block, and the two parts add up to the input gradient bit for bit (the block's backward
# computes exactly this sum).

# %%
exact = all(np.array_equal(b.gradients["input"], b.gradients["branch"] + b.gradients["shortcut"])
            for b in flow.blocks)
print("input gradient == branch part + shortcut part, bit for bit, in every block:", exact)

# %% [markdown]
# ## Plain against residual, at depth 20 and 56
#
# For each network: the measurement at initialisation, 10 SGD steps, the measurement again
# (`skip_connections.run` does exactly what the demo does for one network).

# %%
rows = []
for depth in (20, 56):
    for residual in (False, True):
        rows.append(skip_connections.run(depth, residual, (images, labels), train_set, settings))
print(skip_connections.table(rows, settings.steps))

# %%
show(skip_connections.gradient_figure(rows, settings.steps, data_name))

# %% [markdown]
# **Why?** At initialisation the plain nets' gradient *grows* on its way back, towards the input
# — by orders of magnitude in plain-56. Every layer is He-initialised to keep the scale of the
# signal. Where does the growth come from?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** From batch norm. A batch norm divides its input by the input's spread, so its output
# does not change when the weights before it are scaled; its backward multiplies by $\gamma/\sigma$
# and removes the components along the batch mean and along $\hat x$. Stacked without shortcuts,
# these Jacobians do not compose to norm 1: at initialisation the gradient grows by a roughly
# constant factor per layer, geometrically with depth (Yang et al., 2019, *A mean field theory of
# batch normalization*, prove that this explosion is unavoidable for deep plain nets with batch
# norm). After some training the plain nets' factor per layer changes, and in plain-110 the
# gradient then *vanishes* towards the input instead (the README's table). In both cases the early
# layers get a gradient whose size says little about the loss.

# %% [markdown]
# **Why?** The ResNets' curves zigzag. What alternates?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** The two convolutions of each block: going back, conv2, then conv1, then the next
# block's conv2 ... conv1 reads the residual stream $x$, which grows block by block (each block adds
# its branch to it); conv2 reads a batch-normalised activation. So conv1's output has the larger
# spread, and the batch norm after it divides the gradient by it: the gradient at conv1's output
# lies below the one at conv2's. The cell below measures it in ResNet-56: compare the norms of the
# two convolutions' outputs with the gradients at them.

# %%
minires.manual_seed(0)
flow56 = record_gradient_flow(models.resnet56(), images, labels)
layer = {stats.name: stats for stats in flow56.layers}
print(f"{'block':<10}{'||conv1 output||':>18}{'||conv2 output||':>18}{'gradient at conv1':>20}{'at conv2':>10}")
for block in ("layer1.4", "layer2.4", "layer3.4"):
    conv1, conv2 = layer[f"{block}.conv1"], layer[f"{block}.conv2"]
    print(f"{block:<10}{conv1.activation_norm:>18.4g}{conv2.activation_norm:>18.4g}"
          f"{conv1.grad_norm:>20.3g}{conv2.grad_norm:>10.3g}")

# %%
show(skip_connections.share_figure(rows, settings.steps, data_name))

# %% [markdown]
# **Why?** In ResNet-56 the shortcut share is above 0.5 near the output and falls towards the
# input, and the deeper ResNet has the larger shares. Why do branches near the input contribute
# more?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** The same reason as the zigzag. A branch starts with conv1 and a batch norm, which
# divides by the spread of what conv1 reads: the residual stream. Near the input the stream is
# small (few blocks have added to it yet), so the batch norm divides by little and the branch's
# Jacobian is large; near the output the stream is large and the branch's Jacobian small, while the
# shortcut passes $g$ on unchanged. A deeper net has a larger stream near its output, hence the
# larger shares. The open circles mark the first block of each stage: its option-A shortcut
# subsamples the stream and pads half of the new channels with zeros, so the stream restarts
# smaller there and grows again through the stage — and the share follows it, a small sawtooth.

# %% [markdown]
# In the README's table (`demos/skip_connections.py`, depths 20, 56 and 110), ResNet-110 starts at a
# loss of 4.6, far above chance ($\ln 10 = 2.30$), and its loss *rises* during the ten steps at
# learning rate 0.02. The cell below measures, at initialisation, the loss and the norm of the pooled
# features that the classifier reads (`||y||` of `avgpool`, per image).

# %%
for depth in (20, 56, 110):
    minires.manual_seed(0)
    deep_flow = record_gradient_flow(models.cifar_resnet(depth), images, labels)
    pooled = {stats.name: stats for stats in deep_flow.layers}["avgpool"].activation_norm / np.sqrt(len(images))
    print(f"ResNet-{depth}: loss {deep_flow.loss:.2f}, ||pooled features|| per image {pooled:.1f}")

# %% [markdown]
# **Why?** What makes the deeper ResNet start with the higher loss, and why does its loss rise at a
# learning rate that suits ResNet-20?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** Each block adds a batch-normalised branch to the residual stream, and the ReLU after
# the add keeps the stream non-negative: the stream, and the pooled features, grow with the number
# of blocks. The classifier starts with random weights, so larger features make larger random
# logits, and the initial loss lies further above $\ln 10$ (how far depends on the random draw).
# A step on the classifier's weights changes the logits by about the learning rate times the
# squared norm of the features: the same learning rate is several times as aggressive for
# ResNet-110 as for ResNet-20, the first steps overshoot, and the loss swings up. With a tenth of
# the rate (`--lr 0.002`) it falls from the start. He et al. (2015) saw the same with ResNet-110
# and warmed up at a learning rate of 0.01 for about 400 iterations before switching to 0.1. It
# is not an artefact of the measurement: it is how the original (post-activation) ResNet starts.

# %% [markdown]
# **Why?** Ten SGD steps are a tiny amount of training. Which of the numbers above would you trust
# to look the same on another computer, and which not?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** The orders of magnitude and which network is which: plain nets' gradient changing by
# orders of magnitude across depth, the ResNets' staying within about one, the shares' shape. Not
# the digits after training: different CPUs use different BLAS kernels, which round differently,
# and a deep plain network amplifies such differences step by step. At initialisation, before any
# step, the numbers agree closely from machine to machine; after ten steps plain-110's input/output
# ratio has been measured at 1.3e-5 on one machine and at 2.7e-7 on another.
