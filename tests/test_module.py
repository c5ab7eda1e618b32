"""Module, Parameter, Sequential: registration, iteration, state_dict, hooks, modes, devices, no_grad."""
import numpy as np
import pytest

import minires
from minires import nn
from minires.nn.module import Module, Parameter, StateDictError


class Scale(Module):
    """y = w * x with one parameter and one buffer: the smallest module with state."""

    def __init__(self, n):
        super().__init__()
        self.weight = Parameter(np.arange(1, n + 1, dtype=np.float32))
        self.register_buffer("calls", np.zeros((), dtype=np.int64))

    def forward(self, x):
        self.calls += 1
        self._save_for_backward(x)
        return x * self.weight.data

    def backward(self, grad_output):
        x = self._saved_for_backward()
        self.weight.accumulate_grad((grad_output * x).sum(axis=0))
        return grad_output * self.weight.data


def net():
    return nn.Sequential(Scale(3), nn.ReLU(), nn.Sequential(Scale(3), nn.ReLU()))


def test_registration_and_iteration_follow_pytorch_names():
    model = net()
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "2.0.weight"]
    assert [name for name, _ in model.named_buffers()] == ["0.calls", "2.0.calls"]
    assert list(model.state_dict()) == ["0.weight", "0.calls", "2.0.weight", "2.0.calls"]
    assert [name for name, _ in model.named_modules()] == ["", "0", "1", "2", "2.0", "2.1"]
    assert len(list(model.children())) == 3 and len(list(model.modules())) == 6
    assert isinstance(model[2], nn.Sequential) and len(model) == 3


def test_shared_parameters_are_listed_once():
    shared = Scale(3)
    model = nn.Sequential(shared, shared)
    assert len(list(model.parameters())) == 1


def test_backward_accumulates_into_grad_and_zero_grad_resets():
    model = Scale(3)
    x = np.ones((2, 3), dtype=np.float32)
    for expected in (2.0, 4.0):
        model(x)
        model.backward(np.ones_like(x))
        np.testing.assert_array_equal(model.weight.grad, np.full(3, expected, np.float32))
    model.zero_grad()
    assert model.weight.grad is None


def test_state_dict_round_trip_and_clear_errors():
    source, target = net(), net()
    for p in source.parameters():
        p.data[...] = np.random.default_rng(0).standard_normal(p.shape)
    target.load_state_dict(source.state_dict())
    for (_, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        np.testing.assert_array_equal(a, b)

    state = dict(source.state_dict())
    del state["0.weight"]
    with pytest.raises(StateDictError, match="missing keys: 0.weight"):
        target.load_state_dict(state)
    assert target.load_state_dict(state, strict=False).missing_keys == ["0.weight"]
    with pytest.raises(StateDictError, match="unexpected keys: extra"):
        target.load_state_dict({**source.state_dict(), "extra": np.zeros(1)})
    with pytest.raises(StateDictError, match=r"shape mismatch for 0.weight.*\(4,\).*\(3,\)"):
        target.load_state_dict({**source.state_dict(), "0.weight": np.zeros(4)}, strict=False)


def test_load_state_dict_copies_in_place_and_casts():
    model = Scale(3)
    before = model.weight.data
    model.load_state_dict({"weight": np.array([7.0, 8.0, 9.0]), "calls": np.array(5)})
    assert model.weight.data is before and before.dtype == np.float32
    np.testing.assert_array_equal(before, [7, 8, 9])
    assert int(model.calls) == 5


def test_train_eval_propagate():
    model = net()
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_to_dtype_converts_parameters_grads_and_float_buffers_only():
    model = Scale(3)
    model(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 3), np.float32))
    model.to(dtype=np.float64)
    assert model.weight.dtype == np.float64 and model.weight.grad.dtype == np.float64
    assert model.calls.dtype == np.int64
    model.to(np.float32)
    assert model.weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point dtype"):
        model.to(dtype=np.int32)


def test_to_cuda_without_gpu_is_a_clear_error():
    if minires.backend.cupy_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy finds no CUDA device"):
        Scale(3).to("cuda")


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "gpu", "tpu"])
def test_a_device_that_is_not_cpu_cuda_or_cuda_n_is_a_clear_error(device):
    with pytest.raises(ValueError, match=rf"expected 'cpu', 'cuda' or 'cuda:N', got '{device}'"):
        minires.backend.to_device(np.zeros(2), device)
    with pytest.raises(ValueError, match=rf"expected 'cpu', 'cuda' or 'cuda:N', got '{device}'"):
        Scale(3).to(device=device)


def test_forward_and_backward_hooks_run_and_can_be_removed():
    model = net()
    seen = []
    handles = [model[0].register_forward_hook(lambda m, inputs, out: seen.append(("fwd", out.shape))),
               model[0].register_backward_hook(lambda m, gin, gout: seen.append(("bwd", gin.shape)))]
    x = np.ones((2, 3), np.float32)
    model(x)
    model.backward(np.ones_like(x))
    assert seen == [("fwd", (2, 3)), ("bwd", (2, 3))]
    for handle in handles:
        handle.remove()
    model(x)
    model.backward(np.ones_like(x))
    assert len(seen) == 2


def test_hooks_may_replace_output_and_grad_input():
    model = Scale(3)
    model.register_forward_hook(lambda m, inputs, out: out * 0)
    model.register_backward_hook(lambda m, gin, gout: gin + 1)
    x = np.ones((1, 3), np.float32)
    assert not model(x).any()
    np.testing.assert_array_equal(model.backward(np.zeros_like(x)), np.ones_like(x))


def test_no_grad_keeps_nothing_and_backward_is_an_error():
    model = net()
    x = np.ones((2, 3), np.float32)
    with minires.no_grad():
        assert not minires.is_grad_enabled()
        y = model(x)
    assert minires.is_grad_enabled()
    with pytest.raises(RuntimeError, match="no_grad"):
        model.backward(np.ones_like(y))


def test_no_grad_as_decorator():
    @minires.no_grad()
    def infer():
        return minires.is_grad_enabled()

    assert infer() is False and minires.is_grad_enabled()


def test_backward_before_forward_names_the_layer():
    with pytest.raises(RuntimeError, match=r"ReLU\(\): backward called before forward"):
        nn.ReLU().backward(np.ones(3, np.float32))


def test_parameter_grad_shape_is_checked():
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"gradient of shape \(4,\).*\(3,\)"):
        p.accumulate_grad(np.zeros(4, np.float32))


def test_repr_is_a_tree():
    text = repr(net())
    assert text.startswith("Sequential(") and "(2): Sequential(" in text and "(1): ReLU()" in text


def test_a_reassigned_child_keeps_its_place():
    """PyTorch keeps the order of registration when a child is replaced (Sequential relies on it)."""
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    setattr(model, "0", nn.Identity())
    assert [type(m).__name__ for m in model.children()] == ["Identity", "ReLU", "Linear"]
    layer = nn.Linear(2, 2)
    layer.weight = nn.Parameter(layer.weight.data.copy())
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
