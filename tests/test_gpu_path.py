"""The GPU path on the fake device (minires.testing.fake_cupy): what the layer tests do not reach.

Moving a model (``Module.to``), loading weights and optimizer state onto a device, the optimizers'
steps and state, a training epoch and an evaluation with test-time flips, checkpoints of device
arrays, and Dropout's masks drawn by ``cupy.random``. Most of it runs on ``cuda:1``, not the
default device: CuPy computes on the current GPU only, so every entry point that is given a device
has to make it current, and a forgotten one fails here.

Float64 throughout where numbers are compared with the CPU run (the convolution routes differ
between the devices: the shifted GEMM on the CPU, im2col on a GPU), so "equal" means equal to
float64 rounding.
"""
import numpy as np
import pytest

import minires
from minires import backend, models, nn, optim, train
from minires.data import ArrayDataset, DataLoader
from minires.testing import fake_cupy

TIGHT = dict(rtol=1e-10, atol=1e-12)


def small_resnet(dtype=np.float64):
    """Conv stem, two stages of basic blocks (option-A shortcut), batch norms, the linear head."""
    minires.manual_seed(0)
    return models.cifar_resnet(8, num_classes=5, width=4).to(dtype=dtype)


def host_batches(count=3, size=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, 3, 8, 8)).astype(dtype), rng.integers(0, 5, size)) for _ in range(count)]


def states(model):
    """Parameters and buffers by name, as host arrays."""
    return {name: backend.asnumpy(value) for name, value in model.state_dict().items()}


def assert_on(device, arrays, what):
    for name, array in arrays:
        array = array.data if isinstance(array, nn.Parameter) else array  # a Parameter's array
        assert isinstance(array, fake_cupy.ndarray) and backend.device_of(array) == device, f"{what} {name}"


# -- moving models and loading weights --------------------------------------------------------

def test_module_to_moves_parameters_gradients_and_buffers(fake_gpu):
    model = small_resnet(np.float32)
    expected = states(model)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    model.to("cuda:1", dtype=np.float64)
    assert_on("cuda:1", model.named_parameters(), "parameter")
    assert_on("cuda:1", [(name, p.grad) for name, p in model.named_parameters()], "gradient")
    assert_on("cuda:1", model.named_buffers(), "buffer")
    assert model.bn1.num_batches_tracked.dtype == np.int64 and model.conv1.weight.dtype == np.float64
    model.to("cpu")
    for name, value in states(model).items():
        assert type(value) is np.ndarray
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_load_state_dict_copies_onto_the_models_device(fake_gpu):
    source = small_resnet()
    host_state = states(source)
    on_gpu1 = small_resnet().to("cuda:1")
    cases = [("host -> cuda:1", host_state, on_gpu1),
             ("cuda:1 -> cuda:0", on_gpu1.state_dict(), small_resnet().to("cuda:0")),
             ("cuda:0 -> cpu", small_resnet().to("cuda").state_dict(), small_resnet(np.float32))]
    for what, state, target in cases:
        device = backend.device_of(next(target.parameters()).data)
        target.load_state_dict(state)
        for name, value in target.state_dict().items():
            assert backend.device_of(value) == device, f"{what}: {name}"
            np.testing.assert_array_equal(backend.asnumpy(value), host_state[name].astype(value.dtype),
                                          err_msg=f"{what}: {name}")


# -- optimizers -------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd nesterov": lambda params: optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam amsgrad": lambda params: optim.Adam(params, lr=1e-2, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda params: optim.AdamW(params, lr=1e-2, weight_decay=0.1),
}


def _steps(model, optimizer, gradients, device):
    """Set each parameter's gradient from the host values given, then step."""
    with backend.on_device(device):
        for grads in gradients:
            for p, g in zip(model.parameters(), grads):
                p.grad = backend.to_device(g, device)
            optimizer.step()


def on_the_host(state_dict):
    """An optimizer's state_dict with its arrays copied to the host, as a checkpoint holds it."""
    return {"state": {index: {key: backend.asnumpy(value) if hasattr(value, "shape") else value
                              for key, value in entries.items()} for index, entries in state_dict["state"].items()},
            "param_groups": state_dict["param_groups"]}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_optimizer_steps_and_state_on_a_device_equal_the_cpus(fake_gpu, make):
    rng = np.random.default_rng(5)
    cpu_model = small_resnet()
    gradients = [[rng.standard_normal(p.shape) for p in cpu_model.parameters()] for _ in range(4)]
    cpu_optimizer = make(cpu_model.parameters())
    _steps(cpu_model, cpu_optimizer, gradients[:2], "cpu")

    gpu_model = small_resnet().to("cuda")
    gpu_optimizer = make(gpu_model.parameters())
    _steps(gpu_model, gpu_optimizer, gradients[:2], "cuda")
    for p in gpu_model.parameters():
        assert_on("cuda:0", [(key, v) for key, v in gpu_optimizer.state[p].items() if hasattr(v, "shape")], "state")

    # the state travels: cuda:0 -> host (a checkpoint) -> a fresh optimizer on cuda:1, and on
    resumed_model = small_resnet().to("cuda:1")
    resumed_model.load_state_dict(gpu_model.state_dict())
    resumed = make(resumed_model.parameters())
    resumed.load_state_dict(on_the_host(gpu_optimizer.state_dict()))
    for p in resumed_model.parameters():
        assert_on("cuda:1", [(key, v) for key, v in resumed.state[p].items() if hasattr(v, "shape")], "state")
    _steps(cpu_model, cpu_optimizer, gradients[2:], "cpu")
    _steps(resumed_model, resumed, gradients[2:], "cuda:1")
    expected = states(cpu_model)
    for name, value in states(resumed_model).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)  # elementwise: bit for bit


# -- training, evaluation, checkpoints --------------------------------------------------------

def _train_and_evaluate(device):
    model = small_resnet().to(device)
    optimizer = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=6)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    epochs = [train.train_one_epoch(model, host_batches(seed=epoch), criterion, optimizer, scheduler, device,
                                    progress=False) for epoch in range(2)]
    test = train.evaluate(model, host_batches(count=2, seed=9), num_classes=5, device=device, progress=False,
                          flip=True)
    return model, optimizer, epochs, test


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_training_and_flipped_evaluation_on_a_device_equal_the_cpus(fake_gpu, device):
    cpu_model, _, cpu_epochs, cpu_test = _train_and_evaluate("cpu")
    model, optimizer, epochs, test = _train_and_evaluate(device)
    where = "cuda:0" if device == "cuda" else device
    assert_on(where, model.named_parameters(), "parameter")
    assert_on(where, model.named_buffers(), "buffer")
    for got, expected in zip(epochs, cpu_epochs):
        np.testing.assert_allclose(got["loss"], expected["loss"], **TIGHT)
        assert got["accuracy"] == expected["accuracy"]
    np.testing.assert_allclose(test["loss"], cpu_test["loss"], **TIGHT)
    np.testing.assert_array_equal(test["confusion"], cpu_test["confusion"])
    expected = states(cpu_model)
    for name, value in states(model).items():
        np.testing.assert_allclose(value, expected[name], err_msg=name, **TIGHT)


def test_checkpoints_of_device_arrays_need_no_gpu_to_read(fake_gpu, tmp_path):
    model, optimizer, epochs, _ = _train_and_evaluate("cuda:1")
    loader = DataLoader(ArrayDataset(np.zeros((4, 3, 8, 8), np.uint8), np.arange(4)), batch_size=2, seed=3)
    path = tmp_path / train.CHECKPOINT_NAME
    train.save_checkpoint(path, model, optimizer, None, loader, 1, [{"epoch": 2}])
    expected = states(model)
    with backend.substitute_cupy(None):  # a machine without a GPU reads it
        cpu_model = small_resnet()
        cpu_optimizer = optim.SGD(optim.weight_decay_groups(cpu_model, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
        assert train.load_checkpoint(path, cpu_model, cpu_optimizer)[0] == 1
    gpu_model = small_resnet().to("cuda")
    gpu_optimizer = optim.SGD(optim.weight_decay_groups(gpu_model, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
    train.load_checkpoint(path, gpu_model, gpu_optimizer)
    for restored, device in ((cpu_model, "cpu"), (gpu_model, "cuda:0")):
        for name, value in restored.state_dict().items():
            assert backend.device_of(value) == device, name
            np.testing.assert_array_equal(backend.asnumpy(value), expected[name], err_msg=name)
    buffers = [state["momentum_buffer"] for state in gpu_optimizer.state.values()]
    assert buffers and all(backend.device_of(b) == "cuda:0" for b in buffers)


def test_the_loaders_batches_go_to_the_device_in_training(fake_gpu):
    """The DataLoader gives host batches (uint8 -> float32 on the CPU); ``train_one_epoch`` moves them."""
    rng = np.random.default_rng(2)
    dataset = ArrayDataset(rng.integers(0, 256, (8, 3, 8, 8), dtype=np.uint8), rng.integers(0, 5, 8))
    results = {}
    for device in ("cpu", "cuda:1"):
        model = small_resnet(np.float32).to(device)
        optimizer = optim.SGD(model.parameters(), lr=0.01)
        results[device] = train.train_one_epoch(model, DataLoader(dataset, 4, shuffle=True, seed=1),
                                                nn.CrossEntropyLoss(), optimizer, device=device, progress=False)
    np.testing.assert_allclose(results["cuda:1"]["loss"], results["cpu"]["loss"], rtol=1e-5)


# -- dropout ----------------------------------------------------------------------------------

def test_dropout_draws_its_mask_on_the_device_from_cupy_random(fake_gpu):
    layer = nn.Dropout(p=0.25)
    masks = []
    for _ in range(2):
        minires.manual_seed(4)
        host_state = minires.random.get_state()
        with fake_gpu.cuda.Device(1):
            x = fake_gpu.ones((64, 64), dtype=np.float32)
            y = layer(x)
            dx = layer.backward(fake_gpu.full((64, 64), 2.0, dtype=np.float32))
        assert minires.random.get_state() == host_state  # the host generator was not used
        assert_on("cuda:1", [("output", y), ("input gradient", dx)], "dropout")
        kept = y.get() != 0
        np.testing.assert_array_equal(y.get()[kept], np.float32(1 / 0.75))
        np.testing.assert_array_equal(dx.get(), 2 * y.get())
        masks.append(kept)
    assert 0.70 < masks[0].mean() < 0.80
    np.testing.assert_array_equal(masks[0], masks[1])  # manual_seed reseeds the GPU's generator
