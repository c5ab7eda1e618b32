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
# # 1. Backprop through a residual block, by hand
#
# A residual block computes $y = \mathrm{relu}(F(x) + x)$, where the *branch* $F$ is
# conv → batch norm → ReLU → conv → batch norm. In this notebook you follow the gradient through
# it by hand, with minires' layers (each has its backward written out), and see three things:
#
# 1. **The add copies the gradient** to both of its operands, unchanged.
# 2. **The paths meet at $x$**: $x$ feeds the branch and the shortcut, so its gradient is the
#    sum of what comes back along each.
# 3. **The Jacobian of a block is $R\,(I + F'(x))$** ($R$: the mask of the final ReLU). The product
#    of such Jacobians over many blocks expands into a sum over *paths*, and one of them skips every
#    branch: it cannot vanish the way a product of plain layers' Jacobians does.
#
# Each step is computed with minires and checked numerically. Questions marked **Why?** have their
# answer in the collapsed cell below them (click the "..." to open it); try them first.
#
# Run it with `pip install -e ".[notebooks]"` and `jupyter lab demos/notebooks`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minires
from minires import gradcheck
from minires.models import BasicBlock

minires.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The block's graph, forward and backward
#
# Forward (black, left to right): $s = F(x) + x$, $y = \mathrm{relu}(s)$. Backward (red, right to
# left), from the gradient $\bar y = \partial L/\partial y$ that arrives at the output:
#
# * the final ReLU: $g = \partial L/\partial s = \bar y \odot [s > 0]$;
# * the add $s = f + x$ has $\partial s/\partial f = \partial s/\partial x = I$: it hands $g$,
#   unchanged, to the branch **and** to the shortcut;
# * the branch turns $g$ into $F'(x)^\top g$ (through its five layers' backward passes);
# * at $x$ the two paths meet, and their gradients add: $\partial L/\partial x = F'(x)^\top g + g$.

# %%
def draw_block(ax):
    """The graph of y = relu(F(x) + x): forward above (black), backward below (red)."""
    nodes = ["x", "conv1", "bn1", "relu", "conv2", "bn2", "+", "relu", "y"]
    xs = np.arange(len(nodes)) * 1.3
    for x_pos, name in zip(xs, nodes):
        shape = "circle" if name == "+" else "round,pad=0.3"
        ax.text(x_pos, 0, name, ha="center", va="center", fontsize=11,
                bbox=dict(boxstyle=shape, facecolor="white", edgecolor="black"))
    for a, b in zip(xs[:-1], xs[1:]):
        ax.annotate("", (b - 0.42, 0.12), (a + 0.42, 0.12), arrowprops=dict(arrowstyle="->", color="black"))
        ax.annotate("", (a + 0.42, -0.12), (b - 0.42, -0.12), arrowprops=dict(arrowstyle="->", color="tab:red"))
    # the shortcut: forward over the top, its gradient back under the bottom
    ax.annotate("", (xs[6], 0.3), (xs[0], 0.3),
                arrowprops=dict(arrowstyle="->", color="black", connectionstyle="arc3,rad=-0.25"))
    ax.annotate("", (xs[0], -0.3), (xs[6], -0.3),
                arrowprops=dict(arrowstyle="->", color="tab:red", connectionstyle="arc3,rad=-0.25"))
    ax.text(xs[3], 1.2, "shortcut: x", ha="center", fontsize=10)
    ax.text(xs[3], 0.45, "branch F(x)", ha="center", fontsize=10)
    ax.text(xs[3], -1.3, "shortcut's gradient: g, unchanged", ha="center", color="tab:red", fontsize=10)
    ax.text(xs[2], -0.45, "branch's gradient: F'(x)$^T$ g", ha="center", color="tab:red", fontsize=10)
    ax.text(xs[7], -0.45, "g = $\\bar{y}$ * [s > 0]", ha="center", color="tab:red", fontsize=10)
    ax.text(xs[8], -0.75, "$\\bar{y}$ =\ndL/dy", ha="center", va="top", color="tab:red", fontsize=10)
    ax.text((xs[5] + xs[6]) / 2, -0.45, "g", ha="center", color="tab:red", fontsize=10)
    ax.text(xs[0], -0.75, "dL/dx =\nF'(x)$^T$g + g", ha="center", va="top", color="tab:red", fontsize=10)
    ax.set(xlim=(xs[0] - 0.8, xs[-1] + 0.8), ylim=(-1.7, 1.5))
    ax.axis("off")


fig, ax = plt.subplots(figsize=(11, 3.6))
draw_block(ax)
ax.set_title("a residual block: forward (black), backward (red)")
plt.show()

# %% [markdown]
# ## The backward pass by hand
#
# A small block in float64: 4 channels, a batch of 2 images of 6×6. We run its forward pass, then
# walk back through its layers ourselves — each minires layer keeps what its backward needs — and
# compare with the block's own `backward`.

# %%
block = BasicBlock(4, 4).to(dtype=np.float64)
x = rng.standard_normal((2, 4, 6, 6))
dout = rng.standard_normal((2, 4, 6, 6))       # a random upstream gradient dL/dy

block(x)                                        # forward: every layer keeps its cache
g = block.relu2.backward(dout)                  # the gradient at the add
branch_part = block.conv1.backward(block.bn1.backward(block.relu1.backward(
    block.conv2.backward(block.bn2.backward(g)))))   # F'(x)^T g, through the branch
shortcut_part = g                               # the identity shortcut passes g on unchanged
dx_by_hand = branch_part + shortcut_part        # the paths meet at x

block.zero_grad()
block(x)                                        # a fresh forward: a backward consumes its cache
dx_block = block.backward(dout)
print("largest difference from the block's own backward:", np.abs(dx_by_hand - dx_block).max())
print(f"||branch part|| = {np.linalg.norm(branch_part):.3f},  ||shortcut part|| = {np.linalg.norm(shortcut_part):.3f}")

# %% [markdown]
# The two agree exactly: `BasicBlock.backward` in `minires/models/resnet.py` is these five lines.
# Now check the block numerically, independently of any hand derivation: central differences in
# float64 with a random upstream gradient, for the input and for every parameter.

# %%
report = gradcheck.check_module(BasicBlock(4, 4), x)
print(report)
assert report.ok

# %% [markdown]
# **Why?** The parameters' gradients (conv1, bn1, conv2, bn2) do not depend on the shortcut at
# all: a block that forgot its skip path in the backward would get every parameter row right. Why?
# And what does that mean for a gradient check that only looks at the parameters?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** A parameter of the branch receives $\partial L/\partial \theta = (\partial
# F/\partial \theta)^\top g$: it needs only $g$, the gradient at the add, and the branch's own
# activations. The shortcut only changes what reaches $x$. So a forgotten skip path shows up in
# the *input* gradient alone — and only when the check looks at it, as `check_module` does (try
# `python -m minires.gradcheck --demo-failure`). In a network, the damage appears one block
# further down, where the wrong input gradient becomes the next block's upstream gradient.

# %% [markdown]
# ## The Jacobian of a block: $R\,(I + F'(x))$
#
# With $s = F(x) + x$ and $y = \mathrm{relu}(s)$, the chain rule gives
# $\partial y/\partial x = R\,(F'(x) + I)$ with $R = \mathrm{diag}([s > 0])$. We build both sides
# as matrices for a tiny block (2 channels, 2 images of 3×3: 36 numbers in, 36 out). A backward
# pass computes $J^\top v$ for any $v$; with $v$ the $i$-th unit vector it gives the $i$-th row of
# $J$. (The batch norms couple the two images, so this is the Jacobian of the whole batch.)

# %%
def branch_forward(block, x):
    return block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))


def branch_backward(block, grad):
    return block.conv1.backward(block.bn1.backward(block.relu1.backward(block.conv2.backward(block.bn2.backward(grad)))))


def jacobian(vector_jacobian_product, shape):
    """The matrix J with rows J^T e_i, from a function v -> J^T v on arrays of ``shape``."""
    size = int(np.prod(shape))
    return np.stack([vector_jacobian_product(np.eye(size)[i].reshape(shape)).ravel() for i in range(size)])


def block_jacobian(block, x):
    def vjp(v):
        block(x)
        return block.backward(v)
    return jacobian(vjp, x.shape)


def branch_jacobian(block, x):
    def vjp(v):
        branch_forward(block, x)
        return branch_backward(block, v)
    return jacobian(vjp, x.shape)


tiny = BasicBlock(2, 2).to(dtype=np.float64)
x_tiny = rng.standard_normal((2, 2, 3, 3))
J = block_jacobian(tiny, x_tiny)
J_F = branch_jacobian(tiny, x_tiny)
R = np.diag((branch_forward(tiny, x_tiny) + x_tiny).ravel() > 0).astype(float)
I = np.eye(len(J))
print("J is", J.shape, "; largest difference between J and R (I + F'):", np.abs(J - R @ (I + J_F)).max())

# %% [markdown]
# ## Many blocks: the product expands into paths
#
# Stack $n$ blocks. The Jacobian of the stack is the product of the blocks' Jacobians, each taken
# at its own input $x_k$:
#
# $$\frac{\partial y}{\partial x} = \prod_{k=n}^{1} R_k\,(I + A_k), \qquad A_k = F_k'(x_k).$$
#
# Multiply it out: each factor contributes either $R_k$ (the gradient *skips* block $k$'s branch)
# or $R_k A_k$ (it goes *through* the branch). So the product is a sum of $2^n$ terms, one per
# **path**; a path through $j$ branches is one of $\binom{n}{j}$ (Veit et al., 2016, *Residual
# networks behave like ensembles of relatively shallow networks*). For 3 blocks we compute all 8
# paths and check that they add up to the stack's Jacobian.

# %%
from itertools import product as all_choices

stack = [BasicBlock(2, 2).to(dtype=np.float64) for _ in range(3)]
inputs = [x_tiny]
for b in stack:
    inputs.append(b(inputs[-1]))

factors = []                                    # (R_k, A_k) of each block, at its own input
for b, x_k in zip(stack, inputs):
    R_k = np.diag((branch_forward(b, x_k) + x_k).ravel() > 0).astype(float)
    factors.append((R_k, branch_jacobian(b, x_k)))

def stack_vjp(v):
    h = x_tiny
    for b in stack:
        h = b(h)
    for b in reversed(stack):
        v = b.backward(v)
    return v

J_stack = jacobian(stack_vjp, x_tiny.shape)

paths = {}
for through in all_choices([False, True], repeat=3):    # through[k]: does the path take block k's branch?
    term = np.eye(len(J_stack))
    for (R_k, A_k), branch in zip(factors, through):
        term = (R_k @ A_k if branch else R_k) @ term     # block 1 first, block 3 last
    paths[through] = term

print("largest difference between the stack's Jacobian and the sum of the 8 paths:",
      np.abs(J_stack - sum(paths.values())).max())
for length in range(4):
    norms = [np.linalg.norm(term, 2) for through, term in paths.items() if sum(through) == length]
    print(f"paths through {length} branches: {len(norms)}, spectral norms {np.round(norms, 3)}")

# %% [markdown]
# The path through no branch at all is $R_3 R_2 R_1$: a diagonal of zeros and ones. It passes the
# gradient of every unit that was "on" after each add **unchanged**, whatever the branches do.
#
# ## Depth: a plain product against a residual one
#
# Now a stack of 30 blocks, each time with and without the shortcuts (`residual=False`: the same
# layers, $y = \mathrm{relu}(F(x))$). One backward pass of a random upstream gradient gives the
# gradient at every block's input; we draw its norm against the number of blocks it went through.

# %%
def gradient_norms_through(blocks, x, upstream):
    """||dL/dx_k|| at the input of each block, from the top of the stack down."""
    for b in blocks:
        x = b(x)
    norms, grad = [np.linalg.norm(upstream)], upstream
    for b in reversed(blocks):
        grad = b.backward(grad)
        norms.append(np.linalg.norm(grad))
    return norms


x_wide = rng.standard_normal((4, 8, 6, 6))
upstream = rng.standard_normal(x_wide.shape)
curves = {}
for residual in (False, True):
    minires.manual_seed(1)
    blocks = [BasicBlock(8, 8, residual=residual).to(dtype=np.float64) for _ in range(30)]
    curves["residual" if residual else "plain"] = gradient_norms_through(blocks, x_wide, upstream)

fig, ax = plt.subplots(figsize=(7, 3.8))
ax.semilogy(curves["plain"], "--", label="plain blocks: relu(F(x))")
ax.semilogy(curves["residual"], "-", label="residual blocks: relu(F(x) + x)")
ax.set(xlabel="blocks the gradient has gone back through", ylabel="||dL/dx||",
       title="gradient norm on its way back through 30 blocks (at initialisation)")
ax.grid(alpha=0.3, which="both")
ax.legend()
plt.show()
print(f"after 30 blocks: plain {curves['plain'][-1]:.3g}, residual {curves['residual'][-1]:.3g} "
      f"(upstream {curves['plain'][0]:.3g})")

# %% [markdown]
# The plain stack multiplies the gradient by one Jacobian per block, so its norm changes
# geometrically — here it grows, by orders of magnitude; batch norm at initialisation makes plain
# networks' gradients explode with depth (Yang et al., 2019, *A mean field theory of batch
# normalization*). After training they often vanish instead (see notebook 3 and
# `demos/skip_connections.py`). The residual stack changes it slowly: each block adds its branch's
# contribution to the shortcut's copy.

# %% [markdown]
# **Why?** With the ReLU *after* the add (this block, He et al. 2015), the no-branch path is
# $R_n \cdots R_1$, not $I$. Why does that still not let the gradient vanish geometrically, and what
# did the "pre-activation" block (He et al. 2016, $y = x + F(x)$ with nothing after the add) change?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** Each $R_k$ is a 0/1 diagonal: it zeroes the units that are off and leaves the others
# exactly as they are; it never scales a gradient down by a factor below 1. A product of plain
# Jacobians, in contrast, multiplies the norm by roughly the same factor per layer, $c^n$. The
# pre-activation block has no ReLU after the add, so its Jacobian is $I + F'(x)$ exactly and the
# no-branch path is the identity: the gradient at the output reaches every block undiminished.

# %% [markdown]
# **Why?** A network of 54 blocks has $2^{54}$ paths. Most of them go through about half of the
# blocks. Which paths carry most of the gradient, and why not the long ones?

# %% [markdown] jupyter={"source_hidden": true}
# **Answer.** There are $\binom{54}{j}$ paths through $j$ branches: most go through about 27. But
# each branch passed scales the gradient by its Jacobian, typically by a factor below 1 in a
# trained network, so a path's gradient shrinks with its length. (At initialisation, as in the tiny
# stack above, a branch's Jacobian can be larger than 1; Veit et al. measured trained networks.) Number times size peaks at short
# paths: Veit et al. found that paths through 5 to 17 of the 54 blocks (0.45% of all paths)
# carry almost all of the gradient of a ResNet-110. The deep network trains as an ensemble of
# relatively shallow ones.
