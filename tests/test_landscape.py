"""minires.study.landscape: filter-normalised directions, exact restoration of the weights, the
origin of the grid equal to a plain evaluation, resumable sweeps, bad arguments."""
import numpy as np
import pytest

import minires
from minires import data, models, train
from minires.study import landscape


def small_net():
    minires.manual_seed(0)
    return models.cifar_resnet(8, width=4)


def fixed_loader(n=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8)
    return data.DataLoader(data.ArrayDataset(images, rng.integers(0, 10, size=n)), batch_size=5)


def snapshot(model):
    return {name: value.copy() for name, value in model.state_dict().items()}


def test_each_filter_of_a_direction_has_the_norm_of_the_weights_filter():
    model = small_net()
    first, second = landscape.random_directions(model, 2, seed=3)
    again = landscape.random_directions(model, 1, seed=3)[0]
    for name, p in model.named_parameters():
        d = first[name]
        assert d.shape == p.shape and d.dtype == p.dtype
        np.testing.assert_array_equal(d, again[name])  # the seed decides
        if p.ndim <= 1:  # biases, batch norm's weight and bias: untouched
            assert not d.any(), name
            continue
        norms = np.linalg.norm(d.reshape(len(d), -1), axis=1)
        np.testing.assert_allclose(norms, np.linalg.norm(p.data.reshape(len(d), -1), axis=1), rtol=1e-5,
                                   err_msg=name)
        assert not np.allclose(d, second[name]), name  # two different directions
    assert "fc.weight" in first and first["fc.weight"].shape == (10, 16)  # a linear layer: a filter per output


def test_weights_mode_and_buffers_are_restored_exactly_even_after_an_error():
    model, loader = small_net(), fixed_loader()
    model.train()
    before = snapshot(model)
    directions = landscape.random_directions(model, 2, seed=0)
    result = landscape.sweep(model, directions, [np.linspace(-1, 1, 3)] * 2, loader)
    assert result["complete"] and result["loss"].shape == (3, 3) and not np.isnan(result["loss"]).any()
    assert model.training
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        landscape.sweep(model, directions[:1], [np.linspace(-1, 1, 5)], loader, on_progress=interrupt)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_the_origin_of_the_grid_is_the_plain_evaluation():
    model, loader = small_net(), fixed_loader()
    plain = train.evaluate(model, loader, progress=False)
    directions = landscape.random_directions(model, 2, seed=1)
    result = landscape.sweep(model, directions, [np.linspace(-1, 1, 5)] * 2, loader)
    assert result["loss"][2, 2] == plain["loss"] and result["accuracy"][2, 2] == plain["accuracy"]
    assert result["loss"][0, 0] != plain["loss"]  # elsewhere the weights did move
    line = landscape.sweep(model, directions[:1], [np.linspace(-1, 1, 3)], loader)
    assert line["loss"][1] == plain["loss"] and line["loss"].shape == (3,)


def test_a_sweep_resumes_where_it_stopped_and_refuses_another_sweeps_file(tmp_path):
    model, loader = small_net(), fixed_loader()
    directions = landscape.random_directions(model, 2, seed=2)
    axes = [np.linspace(-1, 1, 3), np.linspace(-0.5, 0.5, 2)]
    whole = landscape.sweep(model, directions, axes, loader)
    path = tmp_path / "sweep.npz"
    seen = []
    part = landscape.sweep(model, directions, axes, loader, path=path, save_every=2, max_points=4,
                           on_progress=lambda done, total: seen.append((done, total)))
    assert not part["complete"] and np.isnan(part["loss"]).sum() == 2 and seen[-1] == (4, 6)
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["loss"], part["loss"])
    rest = landscape.sweep(model, directions, axes, loader, path=path)
    assert rest["complete"]
    np.testing.assert_array_equal(rest["loss"], whole["loss"])
    np.testing.assert_array_equal(rest["accuracy"], whole["accuracy"])

    with pytest.raises(ValueError, match=r"sweep\.npz holds a sweep of other directions; delete it"):
        landscape.sweep(model, landscape.random_directions(model, 2, seed=9), axes, loader, path=path)
    with pytest.raises(ValueError, match="other axes"):
        landscape.sweep(model, directions, [np.linspace(-1, 1, 3)] * 2, loader, path=path)
    with pytest.raises(ValueError, match="other axes and directions"):
        landscape.sweep(model, directions[:1], axes[:1], loader, path=path)
    with pytest.raises(ValueError, match="other images"):
        landscape.sweep(model, directions, axes, fixed_loader(seed=1), path=path)
    model.fc.bias.data[0] += 1
    with pytest.raises(ValueError, match="other weights"):
        landscape.sweep(model, directions, axes, loader, path=path)


def test_bad_arguments():
    model, loader = small_net(), fixed_loader()
    directions = landscape.random_directions(model, 2, seed=0)
    with pytest.raises(ValueError, match="one axis per direction, got 1 axes for 2 directions"):
        landscape.sweep(model, directions, [np.linspace(-1, 1, 3)], loader)
    shuffled = data.DataLoader(loader.dataset, batch_size=5, shuffle=True)
    with pytest.raises(ValueError, match="the loader shuffles"):
        landscape.sweep(model, directions[:1], [np.linspace(-1, 1, 3)], shuffled)
