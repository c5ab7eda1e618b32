"""Gradient flow: how much gradient reaches each layer, and how a residual block splits it.

    from minires.inspect import GradientFlow, record_gradient_flow

    with GradientFlow(model) as flow:             # hooks on, for the passes inside the block
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
    print(flow.table())                           # hooks are off again here

    flow = record_gradient_flow(model, x, y)      # the same in one call; leaves the model as it was

Per layer (every module without children, in the order forward ran them):

    activation_norm    ||y||          the layer's output
    grad_norm          ||dL/dy||      the gradient arriving at its output
    grad_input_norm    ||dL/dx||      the gradient it passes on towards the input

Per residual block ``y = relu(F(x) + S(x))``, with ``g = dL/d(F(x) + S(x))`` the gradient at the
add (an add copies ``g`` to both of its operands):

    branch part        F'(x)^T g      the grad_input of the branch's first layer, ``conv1``
    shortcut part      S'(x)^T g      the grad_input of ``downsample``; for an identity shortcut
                                      ``g`` itself, the grad_input of the ReLU after the add
    input gradient     dL/dx = branch part + shortcut part      (the block's own grad_input)

A plain block (``residual=False``) has no shortcut: its shortcut part is 0. Reported are the norms
of the three and the block's

    shortcut share     ||S'(x)^T g|| / (||S'(x)^T g|| + ||F'(x)^T g||)      between 0 and 1

(1: all of the gradient reaching x came around the branch; 0: all of it came through the branch;
0 for a plain block). The README, the pictures of ``demos/skip_connections.py`` and the table
below use this one name and definition; the table's columns are named as above.

Other blocks say where their parts are with a method ``gradient_split()`` returning
``(branch_start, shortcut_modules, description)``: the branch part is the grad_input of
``branch_start``, the shortcut part the sum of the grad_inputs of ``shortcut_modules`` (the
shortcut, and a gate that reads the same input), in the order the block's backward adds them.
The pre-activation units (``models.preact.ResidualUnit``) do: there nothing need follow the add,
the branch may start with a batch norm, and the shortcut may be scaled or gated. Where a unit
applies its pre-activation before the split, the two parts add up to the gradient at the split
point (the activated input), and ``dL/dx`` is that sum passed back through the pre-activation.

Norms are Euclidean over the whole batch array, computed on the arrays' own device and returned
as Python floats. A module called twice in one forward keeps the numbers of its last call.
Blocks are recognised by ``gradient_split`` (above) or by ``RESIDUAL_BLOCKS``.
"""
import math
from dataclasses import dataclass, field

from .backend import get_array_module
from .models.resnet import BasicBlock, Bottleneck
from .nn import CrossEntropyLoss

# block class -> name of its ReLU after the add (its grad_input is the gradient at the add); blocks
# with a gradient_split() method need no entry
RESIDUAL_BLOCKS = {BasicBlock: "relu2", Bottleneck: "relu3"}


def array_norm(array):
    """``||array||`` over all its elements, as a Python float (one number leaves the device)."""
    xp = get_array_module(array)
    return float(xp.linalg.norm(array.reshape(-1)))


def _copy(array):
    return get_array_module(array).array(array, copy=True)


@dataclass
class LayerStats:
    """One layer: norms of its output, of the gradient at its output and of its input gradient."""
    name: str
    kind: str
    activation_norm: float = math.nan
    grad_norm: float = math.nan
    grad_input_norm: float = math.nan


@dataclass
class BlockStats:
    """One residual block: where the gradient reaching its input came from."""
    name: str
    residual: bool
    shortcut: str                  # "identity", "none" (plain block) or the shortcut's class name
    branch_norm: float = math.nan
    shortcut_norm: float = math.nan
    input_grad_norm: float = math.nan
    gradients: dict = field(default_factory=dict)   # with keep_gradients: "branch", "input" and
                                                    # (residual blocks) "shortcut" arrays

    @property
    def shortcut_share(self):
        """``||shortcut part|| / (||shortcut part|| + ||branch part||)``, between 0 and 1 (NaN when
        no gradient reached the block)."""
        total = self.shortcut_norm + self.branch_norm
        return self.shortcut_norm / total if total > 0 else math.nan


def gradient_split(module):
    """``(branch_start, shortcut_modules, description)`` of a residual block; None for other modules.

    The branch part is the grad_input of ``branch_start``; the shortcut part is the sum of the
    grad_inputs of ``shortcut_modules`` (none for a plain block, whose shortcut part is 0).
    """
    if hasattr(module, "gradient_split"):
        return module.gradient_split()
    for block_type, relu_name in RESIDUAL_BLOCKS.items():
        if isinstance(module, block_type):
            if not getattr(module, "residual", True):
                return module.conv1, [], "none"
            if module.downsample is None:  # the gradient at the add: the grad_input of the ReLU after it
                return module.conv1, [getattr(module, relu_name)], "identity"
            return module.conv1, [module.downsample], type(module.downsample).__name__
    return None


def named_blocks(model):
    """``(name, block)`` for every block of ``RESIDUAL_BLOCKS`` in ``model`` (plain ones too), in
    the order of its modules, which is the order forward runs them in the ResNets."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, tuple(RESIDUAL_BLOCKS))]


class GradientFlow:
    """Records activation and gradient norms of ``model`` while its hooks are on.

    Use as a context manager (hooks on at ``with``, off at its end, even after an error), or
    call ``remove()`` yourself. ``keep_gradients=True`` also keeps copies of each block's three
    gradient arrays in ``BlockStats.gradients`` (memory: three activations per block).
    """

    def __init__(self, model, keep_gradients=False):
        self.model = model
        self.keep_gradients = keep_gradients
        self._layers = {}   # name -> LayerStats, in the order of first forward call
        self._blocks = {}   # name -> BlockStats, in the order of the model's modules
        self._handles = []

    @property
    def layers(self):
        return list(self._layers.values())

    @property
    def blocks(self):
        return list(self._blocks.values())

    # -- hooks on and off ---------------------------------------------------------------------
    def __enter__(self):
        self.attach()
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def attach(self):
        """Start recording (forgets earlier records)."""
        self.remove()
        self._layers.clear()
        self._blocks.clear()
        for name, module in self.model.named_modules():
            if next(module.children(), None) is None:  # a leaf: a layer
                self._watch_layer(name, module)
            split = gradient_split(module)
            if split is not None:
                self._watch_block(name, module, *split)
        return self

    def remove(self):
        """Stop recording: every hook this object added is taken away."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- layers -------------------------------------------------------------------------------
    def _watch_layer(self, name, module):
        def on_forward(module, inputs, output):
            stats = self._layers.setdefault(name, LayerStats(name, type(module).__name__))
            stats.activation_norm = array_norm(output)

        def on_backward(module, grad_input, grad_output):
            stats = self._layers.setdefault(name, LayerStats(name, type(module).__name__))
            stats.grad_norm = array_norm(grad_output)
            stats.grad_input_norm = array_norm(grad_input)

        self._handles += [module.register_forward_hook(on_forward), module.register_backward_hook(on_backward)]

    # -- blocks -------------------------------------------------------------------------------
    def _watch_block(self, name, block, branch_start, shortcut_modules, description):
        stats = self._blocks[name] = BlockStats(name, bool(shortcut_modules), description)
        if not shortcut_modules:
            stats.shortcut_norm = 0.0
        shortcut_parts = {}

        def record(part, attribute):
            def on_backward(module, grad_input, grad_output):
                setattr(stats, attribute, array_norm(grad_input))
                if self.keep_gradients:
                    stats.gradients[part] = _copy(grad_input)
            return on_backward

        def record_shortcut_part(index):
            def on_backward(module, grad_input, grad_output):
                shortcut_parts[index] = grad_input
            return on_backward

        def add_shortcut_parts(block, grad_input, grad_output):  # runs after the parts' own hooks
            if shortcut_parts:
                total = shortcut_parts[0]
                for index in range(1, len(shortcut_modules)):
                    total = total + shortcut_parts[index]
                record("shortcut", "shortcut_norm")(block, total, grad_output)
                shortcut_parts.clear()

        for index, module in enumerate(shortcut_modules):
            self._handles.append(module.register_backward_hook(record_shortcut_part(index)))
        self._handles += [branch_start.register_backward_hook(record("branch", "branch_norm")),
                          block.register_backward_hook(record("input", "input_grad_norm")),
                          block.register_backward_hook(add_shortcut_parts)]

    # -- printing -----------------------------------------------------------------------------
    def table(self, layers=True, blocks=True):
        """The records as text: one line per layer, then one line per block."""
        lines = []
        if layers:
            lines.append(f"{'layer':<28}{'kind':<20}{'||y||':>15}{'||dL/dy||':>13}{'||dL/dx||':>13}")
            lines += [f"{s.name:<28}{s.kind:<20}{s.activation_norm:>15.4g}{s.grad_norm:>13.4g}"
                      f"{s.grad_input_norm:>13.4g}" for s in self.layers]
        if blocks and self._blocks:
            lines.append(f"{'block':<28}{'shortcut':<20}{'||dL/dx||':>15}{'||shortcut part||':>19}"
                         f"{'||branch part||':>17}{'shortcut share':>16}")
            lines += [f"{s.name:<28}{s.shortcut:<20}{s.input_grad_norm:>15.4g}{s.shortcut_norm:>19.4g}"
                      f"{s.branch_norm:>17.4g}{s.shortcut_share:>16.3f}" for s in self.blocks]
        return "\n".join(lines)


def record_gradient_flow(model, x, targets, criterion=None, keep_gradients=False):
    """One forward and backward of ``criterion(model(x), targets)`` under a ``GradientFlow``.

    Runs in the model's current mode (``train()``: batch statistics, as in training). The
    model is left as it was: parameter gradients and buffers (running statistics) are
    restored afterwards. Returns the ``GradientFlow``; ``flow.loss`` holds the loss.
    """
    criterion = criterion or CrossEntropyLoss()
    parameters = list(model.parameters())
    saved_grads = [p.grad for p in parameters]
    saved_buffers = {name: _copy(b) for name, b in model.named_buffers()}
    for p in parameters:
        p.grad = None
    try:
        with GradientFlow(model, keep_gradients) as flow:
            flow.loss = float(criterion(model(x), targets))
            model.backward(criterion.backward())
    finally:
        for p, grad in zip(parameters, saved_grads):
            p.grad = grad
        for name, buffer in model.named_buffers():  # in place, on the buffers' own device
            buffer[...] = saved_buffers[name]
    return flow
