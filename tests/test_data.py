"""minires.data: the CIFAR-10 reader and downloader, the batched transforms, the loader."""
import hashlib
import http.server
import io
import os
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import minires
from minires.data import (CIFAR10, CIFAR10_MEAN, CIFAR10_STD, ArrayDataset, Compose, DataLoader,
                          DatasetCorruptError, DatasetNotFoundError, DownloadError, Normalize,
                          RandomCrop, RandomHorizontalFlip, Subset, ToFloat)
from minires.testing.cifar_files import BATCH_FILES, CLASSES, PER_BATCH, dump_pickle, make_cifar_folder

@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / "root"
    return root, make_cifar_folder(root)


def test_reader_train_split_shapes_order_and_layout(cifar_root):
    root, contents = cifar_root
    ds = CIFAR10(root, train=True)
    assert len(ds) == 5 * PER_BATCH
    assert ds.data.shape == (5 * PER_BATCH, 3, 32, 32) and ds.data.dtype == np.uint8
    assert ds.targets.dtype == np.int64
    rows = np.concatenate([contents[f"data_batch_{k}"][0] for k in range(1, 6)])
    labels = sum((contents[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    np.testing.assert_array_equal(ds.targets, labels)
    # A row holds the R plane, then G, then B, each row-major 32x32.
    n, c, y, x = 7, 2, 5, 30
    assert ds.data[n, c, y, x] == rows[n, c * 1024 + y * 32 + x]
    np.testing.assert_array_equal(ds.data.reshape(len(ds), -1), rows)
    assert ds.classes == CLASSES and ds.class_to_idx["cat"] == 3


def test_reader_test_split_and_getitem(cifar_root):
    root, contents = cifar_root
    ds = CIFAR10(str(root), train=False)
    rows, labels = contents["test_batch"]
    np.testing.assert_array_equal(ds.targets, labels)
    image, label = ds[1]
    assert image.shape == (3, 32, 32) and label == labels[1]
    images, batch_labels = ds[np.array([3, 0])]
    np.testing.assert_array_equal(images.reshape(2, -1), rows[[3, 0]])
    np.testing.assert_array_equal(batch_labels, [labels[3], labels[0]])
    assert "Split: Test" in repr(ds) and f"Number of datapoints: {PER_BATCH}" in repr(ds)


def test_test_split_needs_only_its_own_file(cifar_root):
    root, _ = cifar_root
    os.remove(root / "cifar-10-batches-py" / "data_batch_2")
    assert len(CIFAR10(root, train=False)) == PER_BATCH


# --- missing and corrupt folders ----------------------------------------------------------------

def test_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"folder .*cifar-10-batches-py not found.*"
                                                   r"download=True.*cifar-10-python\.tar\.gz"):
        CIFAR10(tmp_path / "nowhere")
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_missing_batch_file_is_named(cifar_root):
    root, _ = cifar_root
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetNotFoundError, match=r"file .*cifar-10-batches-py/data_batch_3 "
                                                   r"not found"):
        CIFAR10(root, train=True)


def test_truncated_pickle_is_corrupt(cifar_root):
    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_4"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetCorruptError, match=r"data_batch_4 is corrupt: it cannot be "
                                                  r"unpickled.*download=True"):
        CIFAR10(root)


@pytest.mark.parametrize("batch, problem", [
    ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4},
     r"shape \(N, 3072\).*\(4, 3000\)"),
    ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"uint8.*float32"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"list of 4 ints, got 3"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"ints in 0\.\.9, got 10 \(label 3\)"),
    ({b"labels": [0] * 4}, r"'data' must be .* got NoneType"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1.7, 2, 3]}, r"ints in 0\.\.9, got 1\.7 \(label 1\)"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, "cat", 3]}, r"got 'cat' \(label 2\)"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 2 ** 70]},
     r"got 1180591620717411303424 \(label 3\)"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [True, 1, 2, 3]}, r"got True \(label 0\)"),
    ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, r"it holds no images"),
])
def test_wrong_contents_are_corrupt(cifar_root, batch, problem):
    root, _ = cifar_root
    dump_pickle(root / "cifar-10-batches-py" / "data_batch_5", batch)
    with pytest.raises(DatasetCorruptError, match=r"data_batch_5 is corrupt: .*" + problem):
        CIFAR10(root)


def test_a_test_batch_without_images_is_corrupt(cifar_root):
    """Not a test set of 0 images that trains on and reports 0.00%."""
    root, _ = cifar_root
    dump_pickle(root / "cifar-10-batches-py" / "test_batch",
                {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    with pytest.raises(DatasetCorruptError, match=r"test_batch is corrupt: it holds no images"):
        CIFAR10(root, train=False)


def test_bad_meta_is_corrupt(cifar_root):
    root, _ = cifar_root
    dump_pickle(root / "cifar-10-batches-py" / "batches.meta", {b"label_names": [b"cat"]})
    with pytest.raises(DatasetCorruptError, match=r"batches\.meta is corrupt: expected 10"):
        CIFAR10(root)


class _Payload:
    """Unpickling this would create a directory: the reader must refuse it, not run it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_reader_refuses_code_in_pickles(cifar_root, tmp_path):
    root, _ = cifar_root
    marker = tmp_path / "payload_ran"
    dump_pickle(root / "cifar-10-batches-py" / "test_batch", {b"data": _Payload(marker)})
    with pytest.raises(DatasetCorruptError, match=r"mkdir is not allowed"):
        CIFAR10(root, train=False)
    assert not marker.exists()


# --- download (from a local archive: there is no network here) --------------------------------

def _make_archive(tmp_path, extra_members=()):
    """A cifar-10-python.tar.gz of a tiny folder; returns (path, md5, contents)."""
    source = tmp_path / "source"
    contents = make_cifar_folder(source)
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        for member, payload in extra_members:
            tar.addfile(member, io.BytesIO(payload) if payload is not None else None)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), contents


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Point CIFAR10.url and .md5 at a local archive."""
    archive, md5, contents = _make_archive(tmp_path)
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", md5)
    return archive, contents


def _leftovers(root):
    return [p.name for p in Path(root).rglob("*.part")]


def test_download_fetches_checks_and_extracts(served, tmp_path, capsys):
    _, contents = served
    root = tmp_path / "fresh" / "cache"
    ds = CIFAR10(root, train=False, download=True)
    np.testing.assert_array_equal(ds.targets, contents["test_batch"][1])
    assert len(CIFAR10(root, train=True)) == 5 * PER_BATCH
    assert (root / "cifar-10-python.tar.gz").is_file()  # kept, like torchvision
    assert _leftovers(root) == []
    assert "Downloading cifar-10-python.tar.gz" in capsys.readouterr().err  # the progress bar


def test_download_with_wrong_md5_keeps_nothing(served, tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "md5", "0" * 32)
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError, match=r"md5 of file://.* is [0-9a-f]{32}, expected 0{32}"):
        CIFAR10(root, download=True)
    assert not (root / "cifar-10-python.tar.gz").exists() and _leftovers(root) == []


def test_download_offline_says_where_to_put_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "url", (tmp_path / "no" / "such.tar.gz").as_uri())
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError, match=r"could not download .*offline.*extract it into "
                                            r".*cifar-10-batches-py/data_batch_1"):
        CIFAR10(root, download=True)
    assert _leftovers(root) == []


class _TricklingServer(http.server.BaseHTTPRequestHandler):
    """Announces 1,000 bytes and sends one every 50 ms (a server that never quite stops)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(40):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def log_message(self, *args):
        pass


@pytest.fixture
def trickling_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TricklingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    server.shutdown()
    server.server_close()


def test_a_trickling_download_stops_at_the_deadline_and_keeps_nothing(trickling_url, tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "url", trickling_url)
    monkeypatch.setattr(CIFAR10, "download_deadline", 0.5)
    root = tmp_path / "fresh"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"took longer than 0\.5 s.*extract it into"):
        CIFAR10(root, download=True)
    assert time.monotonic() - start < 1.5  # the 40 bytes would take 2 s
    assert _leftovers(root) == [] and not (root / "cifar-10-python.tar.gz").exists()


def test_download_removes_the_partial_files_of_a_killed_download(served, tmp_path):
    root = tmp_path / "fresh"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    stale = [root / ".cifar-10-python.tar.gz.k1ll3d00.part", root / "cifar-10-batches-py" / ".data_batch_1.x7f3a9qz.part"]
    for path in stale:
        path.write_bytes(b"half a file")
    assert len(CIFAR10(root, download=True)) == 5 * PER_BATCH
    assert _leftovers(root) == []


def test_download_skips_a_complete_folder(cifar_root, monkeypatch, tmp_path):
    root, contents = cifar_root
    monkeypatch.setattr(CIFAR10, "url", (tmp_path / "unreachable.tar.gz").as_uri())
    ds = CIFAR10(root, train=False, download=True)  # md5 of the folder's files is not asked for
    np.testing.assert_array_equal(ds.targets, contents["test_batch"][1])


def test_download_reuses_a_good_archive_for_an_incomplete_folder(served, tmp_path, monkeypatch):
    archive, _ = served
    root = tmp_path / "fresh"
    CIFAR10(root, download=True)
    os.remove(root / "cifar-10-batches-py" / "data_batch_2")
    os.remove(archive)  # the "network" is gone; the kept archive must do
    assert len(CIFAR10(root, download=True)) == 5 * PER_BATCH


def test_extraction_ignores_paths_outside_the_folder(tmp_path, monkeypatch):
    escape = tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt")
    escape.size = 3
    absolute = tarfile.TarInfo(str(tmp_path / "absolute.txt"))
    absolute.size = 3
    archive, md5, _ = _make_archive(tmp_path, [(escape, b"bad"), (absolute, b"bad")])
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", md5)
    root = tmp_path / "a" / "b"
    assert len(CIFAR10(root, download=True)) == 5 * PER_BATCH
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "absolute.txt").exists()
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        BATCH_FILES + ["batches.meta"])


def test_extraction_refuses_links(tmp_path, monkeypatch):
    source = tmp_path / "src"
    make_cifar_folder(source)
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(link)
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetCorruptError, match=r"data_batch_1 is not a regular file"):
        CIFAR10(tmp_path / "root", download=True)


def test_archive_missing_a_file_is_corrupt(tmp_path, monkeypatch):
    source = tmp_path / "src"
    make_cifar_folder(source)
    archive = tmp_path / "partial.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py" / "test_batch",
                arcname="cifar-10-batches-py/test_batch")
    monkeypatch.setattr(CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DatasetCorruptError, match=r"lacks .*data_batch_1"):
        CIFAR10(tmp_path / "root", download=True)


# --- the real data (the folder MINIRES_DATA names), when it is there -------------------------

@pytest.fixture(scope="module")
def real_train(real_data_root):
    return CIFAR10(real_data_root, train=True)


@pytest.mark.realdata
def test_real_training_set(real_train):
    assert real_train.data.shape == (50_000, 3, 32, 32) and real_train.data.dtype == np.uint8
    np.testing.assert_array_equal(real_train.targets[:10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
    np.testing.assert_array_equal(np.bincount(real_train.targets), [5000] * 10)
    first = real_train.data[0].reshape(-1)  # the file's row 0
    np.testing.assert_array_equal(first[:3], [59, 43, 50])
    np.testing.assert_array_equal(first[-3:], [140, 84, 72])
    assert real_train.classes == CLASSES
    # The named statistics are those of this data (exact, from each channel's histogram).
    values = np.arange(256) / 255
    for c in range(3):
        channel = real_train.data[:, c].ravel()
        counts = np.bincount(channel, minlength=256) / channel.size
        mean = counts @ values
        std = np.sqrt(counts @ (values - mean) ** 2)
        assert abs(mean - CIFAR10_MEAN[c]) < 1e-4 and abs(std - CIFAR10_STD[c]) < 1e-4


@pytest.mark.realdata
def test_real_test_set(real_data_root):
    test = CIFAR10(real_data_root, train=False)
    assert len(test) == 10_000
    np.testing.assert_array_equal(test.targets[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
    np.testing.assert_array_equal(np.bincount(test.targets), [1000] * 10)


@pytest.mark.realdata
def test_real_data_through_the_training_pipeline(real_train):
    loader = DataLoader(Subset.first(real_train, 1000), batch_size=256, shuffle=True,
                        transform=Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
                                           ToFloat(), Normalize(CIFAR10_MEAN, CIFAR10_STD)]))
    images, labels = next(iter(loader))
    assert images.shape == (256, 3, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int64
    assert abs(images.mean()) < 0.3 and 0.7 < images.std() < 1.3


# --- transforms ---------------------------------------------------------------------------------

@pytest.fixture
def images():
    return np.random.default_rng(5).integers(0, 256, size=(6, 3, 8, 10), dtype=np.uint8)


def test_to_float(images):
    out = ToFloat()(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, torch.from_numpy(images).float().div(255).numpy())
    extremes = ToFloat()(np.array([0, 255], np.uint8).reshape(1, 1, 1, 2))
    np.testing.assert_array_equal(extremes.ravel(), [0.0, 1.0])
    assert ToFloat(np.float64)(images).dtype == np.float64
    assert ToFloat()(images.astype(np.float64)).dtype == np.float32  # floats are only cast
    with pytest.raises(TypeError, match=r"ToFloat: expected a uint8 .* got dtype int32"):
        ToFloat()(images.astype(np.int32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_torch_and_standardises(images, dtype):
    x = ToFloat(dtype)(images)
    out = Normalize(CIFAR10_MEAN, CIFAR10_STD)(x)
    assert out.dtype == dtype
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.from_numpy(x).dtype).view(-1, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=mean.dtype).view(-1, 1, 1)
    np.testing.assert_array_equal(out, ((torch.from_numpy(x) - mean) / std).numpy())
    # With the batch's own statistics, every channel comes out with mean 0 and std 1.
    own = Normalize(x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)))(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(own.mean(axis=(0, 2, 3)), 0, atol=tol)
    np.testing.assert_allclose(own.std(axis=(0, 2, 3)), 1, atol=tol)


def test_normalize_bad_input(images):
    with pytest.raises(TypeError, match=r"Normalize: expected a floating-point batch \(put "
                                        r"ToFloat\(\) before"):
        Normalize(CIFAR10_MEAN, CIFAR10_STD)(images)
    with pytest.raises(ValueError, match=r"Normalize: mean and std have 2 channels, got a batch "
                                         r"of shape \(6, 3, 8, 10\)"):
        Normalize((0.5, 0.5), (1.0, 1.0))(ToFloat()(images))
    with pytest.raises(ValueError, match=r"Normalize: std must not contain zeros"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match=r"Normalize: mean has 2 values but std has 1"):
        Normalize((0.5, 0.5), (1.0,))


def test_flip_really_flips(images):
    before = images.copy()
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(images), images[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(images), images)
    many = np.random.default_rng(0).integers(0, 256, size=(200, 3, 4, 5), dtype=np.uint8)
    out = RandomHorizontalFlip()(many, np.random.default_rng(7))
    flipped = np.all(out == many[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == many, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)  # each image is either mirrored or untouched
    np.testing.assert_array_equal(flipped, np.random.default_rng(7).random(200) < 0.5)
    assert 70 < flipped.sum() < 130
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(images, before)  # the input is not modified


def _position_pattern(n, height, width):
    """Float images whose pixel (c, i, j) holds 1 + c*10000 + i*100 + j: every value unique."""
    c, i, j = np.meshgrid(np.arange(3), np.arange(height), np.arange(width), indexing="ij")
    pattern = (1 + c * 10000 + i * 100 + j).astype(np.float32)
    return np.broadcast_to(pattern, (n, 3, height, width)).copy()


def test_crop_really_shifts_and_pads_with_zeros():
    x = _position_pattern(300, 32, 32)
    out = RandomCrop(32, padding=4)(x, np.random.default_rng(3))
    assert out.shape == x.shape and out.dtype == np.float32
    # Decode each image's offset from its centre pixel: out[16, 16] = x[12 + top, 12 + left].
    centre = out[:, 0, 16, 16].astype(int) - 1
    top, left = centre // 100 - 12, centre % 100 - 12
    assert set(top) == set(range(9)) and set(left) == set(range(9))  # all offsets 0..8 occur
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for n in range(len(x)):
        window = padded[n, :, top[n]:top[n] + 32, left[n]:left[n] + 32]
        np.testing.assert_array_equal(out[n], window)
    corner = np.flatnonzero((top == 0) & (left == 0))[0]
    assert np.all(out[corner, :, :4, :] == 0) and np.all(out[corner, :, :, :4] == 0)


def test_crop_without_padding_takes_windows():
    x = _position_pattern(20, 12, 9)
    out = RandomCrop((5, 7))(x, np.random.default_rng(0))
    assert out.shape == (20, 3, 5, 7)
    top, left = (out[:, 0, 0, 0].astype(int) - 1) // 100, (out[:, 0, 0, 0].astype(int) - 1) % 100
    for n in range(len(x)):
        np.testing.assert_array_equal(out[n], x[n, :, top[n]:top[n] + 5, left[n]:left[n] + 7])


def test_crop_padding_spellings_fill_and_modes(images):
    # torchvision's 4-tuple is (left, top, right, bottom); cropping to the padded size is exact.
    out = RandomCrop((8 + 2 + 4, 10 + 1 + 3), padding=(1, 2, 3, 4), fill=7)(images)
    np.testing.assert_array_equal(out, np.pad(images, ((0, 0), (0, 0), (2, 4), (1, 3)),
                                              constant_values=7))
    out = RandomCrop((8 + 4, 10 + 2), padding=(1, 2))(images)  # (left/right, top/bottom)
    np.testing.assert_array_equal(out, np.pad(images, ((0, 0), (0, 0), (2, 2), (1, 1))))
    out = RandomCrop((10, 12), padding=1, padding_mode="reflect")(images)
    np.testing.assert_array_equal(out, np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect"))
    assert out.dtype == np.uint8


def test_crop_bad_arguments(images):
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(20, 20\) is larger than the "
                                         r"padded images \(10, 12\)"):
        RandomCrop(20, padding=1)(images)
    with pytest.raises(ValueError, match=r"RandomCrop: padding must be"):
        RandomCrop(8, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=r"padding_mode must be"):
        RandomCrop(8, padding_mode="wrap")
    with pytest.raises(ValueError, match=r"RandomCrop size: expected a positive int"):
        RandomCrop(0)


@pytest.mark.parametrize("transform", [RandomCrop(8), RandomHorizontalFlip(), ToFloat(),
                                       Normalize((0.5,), (0.5,))])
def test_transforms_check_their_input(transform, images):
    with pytest.raises(ValueError, match=rf"{type(transform).__name__}: expected a 4-D batch "
                                         r"\(N, C, H, W\), got shape \(3, 8, 10\)"):
        transform(images[0])
    with pytest.raises(TypeError, match=rf"{type(transform).__name__}: expected a NumPy batch"):
        transform(images.tolist())


def test_compose_chains_with_one_generator(images):
    crop, flip = RandomCrop(8, padding=2), RandomHorizontalFlip()
    rng = np.random.default_rng(11)
    expected = flip(crop(images, rng), rng)
    chained = Compose([crop, flip])(images, np.random.default_rng(11))
    np.testing.assert_array_equal(chained, expected)
    assert "RandomCrop" in repr(Compose([crop, flip]))


def test_global_generator_is_the_default(images):
    augment = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
    minires.manual_seed(4)
    first = augment(images)
    minires.manual_seed(4)
    np.testing.assert_array_equal(augment(images), first)


# --- datasets and the loader --------------------------------------------------------------------

def _indexed(n, height=4, width=4):
    """A dataset whose label is the sample index and whose pixels encode it too."""
    pixels = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None]
    return ArrayDataset(np.broadcast_to(pixels, (n, 3, height, width)).copy(), np.arange(n))


def _epoch(loader):
    batches = list(loader)
    return (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]),
            [len(y) for _, y in batches])


def test_loader_batches_dtypes_and_order():
    ds = _indexed(10)
    loader = DataLoader(ds, batch_size=3)
    assert len(loader) == 4
    images, labels, sizes = _epoch(loader)
    assert sizes == [3, 3, 3, 1]
    assert images.dtype == np.float32 and images.shape == (10, 3, 4, 4) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(10))
    np.testing.assert_array_equal(images, ds.data / np.float32(255))  # default transform: ToFloat


def test_loader_drop_last():
    loader = DataLoader(_indexed(10), batch_size=3, drop_last=True)
    assert len(loader) == 3 and _epoch(loader)[2] == [3, 3, 3]
    assert len(DataLoader(_indexed(9), batch_size=3, drop_last=True)) == 3
    assert len(DataLoader(_indexed(2), batch_size=3, drop_last=True)) == 0
    assert list(DataLoader(_indexed(2), batch_size=3, drop_last=True)) == []


def test_shuffle_sees_every_sample_once_and_changes_per_epoch():
    loader = DataLoader(_indexed(50), batch_size=8, shuffle=True, seed=3)
    images0, labels0, _ = _epoch(loader)
    _, labels1, _ = _epoch(loader)
    assert loader.epoch == 2
    np.testing.assert_array_equal(np.sort(labels0), np.arange(50))
    np.testing.assert_array_equal(np.sort(labels1), np.arange(50))
    assert not np.array_equal(labels0, labels1)
    np.testing.assert_array_equal(images0[:, 0, 0, 0] * 255, labels0)  # images follow their labels
    np.testing.assert_array_equal(labels0, loader.epoch_order(0))
    _, other_seed, _ = _epoch(DataLoader(_indexed(50), batch_size=8, shuffle=True, seed=4))
    assert not np.array_equal(labels0, other_seed)


def test_resume_reproduces_batches_and_augmentations():
    ds = ArrayDataset(np.random.default_rng(0).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8),
                      np.arange(40))
    augment = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), ToFloat()])
    straight = DataLoader(ds, batch_size=16, shuffle=True, transform=augment, seed=9)
    epochs = [_epoch(straight) for _ in range(3)]

    first = DataLoader(ds, batch_size=16, shuffle=True, transform=augment, seed=9)
    _epoch(first)
    state = first.state_dict()
    resumed = DataLoader(ds, batch_size=16, shuffle=True, transform=augment, seed=0)
    resumed.load_state_dict(state)
    for expected in epochs[1:]:
        got = _epoch(resumed)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])

    jumped = DataLoader(ds, batch_size=16, shuffle=True, transform=augment, seed=9, prefetch=False)
    jumped.set_epoch(2)  # also independent of the thread that prepared the batches
    np.testing.assert_array_equal(_epoch(jumped)[0], epochs[2][0])


def _loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("minires-loader")]


def test_batches_are_prepared_in_a_background_thread():
    where = []

    def record(batch, rng):
        where.append(threading.current_thread().name)
        return ToFloat()(batch)

    list(DataLoader(_indexed(6), batch_size=2, transform=record))
    assert len(where) == 3 and all(name.startswith("minires-loader") for name in where)
    where.clear()
    list(DataLoader(_indexed(6), batch_size=2, transform=record, prefetch=False))
    assert where == [threading.current_thread().name] * 3
    assert _loader_threads() == []


def test_worker_errors_reach_the_caller_and_the_thread_stops():
    calls = []

    def fails_on_third_batch(batch, rng):
        calls.append(len(calls))
        if len(calls) == 3:
            raise ValueError("broken augmentation in batch 2")
        return ToFloat()(batch)

    seen = []
    with pytest.raises(ValueError, match="broken augmentation in batch 2"):
        for images, _ in DataLoader(_indexed(10), batch_size=2, transform=fails_on_third_batch):
            seen.append(len(images))
    assert seen == [2, 2]
    assert _loader_threads() == []


def test_stopping_early_leaves_no_thread():
    loader = DataLoader(_indexed(20), batch_size=2)
    for _ in loader:
        assert len(_loader_threads()) == 1  # the next batch is being prepared
        break
    assert _loader_threads() == []
    iterator = iter(loader)
    next(iterator)
    iterator.close()
    assert _loader_threads() == []


def test_transform_must_return_float32():
    with pytest.raises(TypeError, match=r"DataLoader: the transform must return a float32 NumPy "
                                        r"batch \(N, C, H, W\), got ndarray uint8"):
        next(iter(DataLoader(_indexed(4), batch_size=2, transform=lambda x, rng: x)))


def test_loader_bad_arguments():
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        DataLoader(_indexed(4), batch_size=0)
    with pytest.raises(ValueError, match=r"seed must be a non-negative int, got -1"):
        DataLoader(_indexed(4), seed=-1)
    with pytest.raises(TypeError, match=r"DataLoader: expected a dataset with 'data' and "
                                        r"'targets' arrays .* got list"):
        DataLoader([1, 2, 3])


def test_loader_takes_an_array_pair_and_a_cifar_dataset(cifar_root):
    images, labels = next(iter(DataLoader((np.zeros((5, 1, 2, 2), np.uint8), [1, 2, 3, 4, 5]),
                                          batch_size=5)))
    np.testing.assert_array_equal(labels, [1, 2, 3, 4, 5])
    root, _ = cifar_root
    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(),
                       Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    loader = DataLoader(CIFAR10(root), batch_size=8, shuffle=True, transform=augment)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int64 and len(loader) == 3


def test_array_dataset_checks():
    with pytest.raises(ValueError, match=r"ArrayDataset: expected images of shape \(N, C, H, W\)"):
        ArrayDataset(np.zeros((4, 2, 2)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"ArrayDataset: expected 4 integer labels, got float64"):
        ArrayDataset(np.zeros((4, 1, 2, 2)), np.zeros(4))


def test_subsets(cifar_root):
    root, _ = cifar_root
    full = CIFAR10(root)
    first = Subset.first(full, 5)
    np.testing.assert_array_equal(first.data, full.data[:5])
    np.testing.assert_array_equal(first.targets, full.targets[:5])
    assert first.classes == CLASSES and len(first) == 5
    chosen = Subset.random(full, 6, seed=1)
    assert len(chosen) == 6 and np.all(np.diff(chosen.indices) > 0)  # kept in dataset order
    np.testing.assert_array_equal(chosen.data, full.data[chosen.indices])
    np.testing.assert_array_equal(Subset.random(full, 6, seed=1).indices, chosen.indices)
    assert not np.array_equal(Subset.random(full, 6, seed=2).indices, chosen.indices)
    with pytest.raises(ValueError, match=r"Subset: n must be an int in 1\.\.20, got 21"):
        Subset.first(full, 21)
    with pytest.raises(ValueError, match=r"Subset: indices must be .* within 0\.\.19"):
        Subset(full, [0, 20])
