"""CIFAR-10: the official python-version files, read into one uint8 array.

The layout is torchvision's: ``root`` holds the folder ``cifar-10-batches-py/`` with

    data_batch_1 ... data_batch_5   10,000 training images each
    test_batch                      10,000 test images
    batches.meta                    the class names

Each batch file is a pickled dict (written by Python 2, protocol 2): ``b'data'`` is a uint8
array of shape (N, 3072) whose rows hold the red plane, then green, then blue, each a
row-major 32x32 image; ``b'labels'`` is a list of N ints in 0..9.

Layout in memory: ``dataset.data`` is uint8 **NCHW**, shape (N, 3, 32, 32). A file row is
already channel-major, so this is a free reshape, and the batched transforms and the model
both work in NCHW (torchvision keeps NHWC for PIL; we have no PIL step). ``dataset.targets``
is an int64 array of length N. Keeping uint8 costs 150 MB for the training set, a quarter of
float32; the loader converts one batch at a time.

Unpickling can run arbitrary code, so the reader allows only the few globals that rebuild a
NumPy array (``minires.io.RestrictedUnpickler``): a doctored file fails loudly instead.

``download=True`` fetches the official archive with a progress bar, checks its md5, and
extracts the known files. A folder that is already complete is used as it is: copies rebuilt
from other sources have different checksums but the same pixels, so
the md5 is checked on the archive only; the reader checks shapes and labels instead.
"""
import hashlib
import os
import pickle
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import NUMPY_GLOBALS, RestrictedUnpickler, remove_orphans

IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


class DatasetNotFoundError(FileNotFoundError):
    """The dataset folder, or one of its files, is not where it must be."""


class DatasetCorruptError(RuntimeError):
    """A dataset file exists but cannot be read, or holds the wrong shapes or labels."""


class DownloadError(RuntimeError):
    """The archive could not be fetched (offline?) or its md5 is wrong."""


# What a batch file holds besides dicts, lists and ints: NumPy arrays and bytes.
_CIFAR_GLOBALS = NUMPY_GLOBALS | {
    ("_codecs", "encode"),                                 # how Python 3 writes bytes in protocol 2
    ("__builtin__", "bytes"), ("builtins", "bytes"),       # ... and empty bytes (an empty array's data)
}


def _unpickle(path):
    """The dict in a batch file, with str keys (the files have bytes keys)."""
    with open(path, "rb") as f:
        content = RestrictedUnpickler(f, _CIFAR_GLOBALS, "a CIFAR file", encoding="bytes").load()
    if not isinstance(content, dict):
        raise pickle.UnpicklingError(f"expected a dict, got {type(content).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _is_class_index(label):
    """An int (a Python or NumPy integer, not a bool) in 0..9."""
    return (isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_))
            and 0 <= label < NUM_CLASSES)


def file_md5(path, chunk_size=1 << 20):
    """The hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path, chunks):
    """Write the byte ``chunks`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class CIFAR10:
    """The CIFAR-10 training set (50,000 images) or test set (10,000), in memory.

    ``CIFAR10(root, train=True, download=False)``: ``root`` holds ``cifar-10-batches-py/``.

    Attributes: ``data`` uint8 (N, 3, 32, 32) NCHW; ``targets`` int64 (N,); ``classes`` the ten
    names from ``batches.meta``; ``class_to_idx``. ``dataset[i]`` is ``(image, label)``, and an
    index array gives a batch. There is no per-sample ``transform``: augmentations are batched
    and applied by ``DataLoader(..., transform=...)``, which owns the random generator.

    Raises ``DatasetNotFoundError`` when files are missing, ``DatasetCorruptError`` when a file
    is unreadable or holds wrong shapes, ``DownloadError`` when ``download=True`` fails. Every
    message says where the files must be and how to get them.

    ``url``, ``md5`` and ``filename`` are class attributes, so a mirror (or a local
    ``file://`` archive, as in the tests) can be used by overriding them.
    """

    base_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    md5 = "c58f30108f718f92721af3b95e74349a"
    train_files = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
    test_files = ("test_batch",)
    meta_file = "batches.meta"
    download_timeout = 60  # seconds without data before a download gives up
    download_deadline = 3600  # seconds for the whole download (170 MB: 47 KB/s at the least)

    def __init__(self, root, train=True, download=False):
        self.root = Path(root).expanduser()
        self.train = train
        if download:
            self.download()
        self.classes = self._read_class_names()
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.data, self.targets = self._read_batches(self.train_files if train else self.test_files)

    @property
    def folder(self):
        return self.root / self.base_folder

    @property
    def _all_files(self):
        return self.train_files + self.test_files + (self.meta_file,)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        """``(image uint8 (3, 32, 32), label)``; an index array gives ``(images, labels)``."""
        return self.data[index], self.targets[index]

    def __repr__(self):
        split = "Train" if self.train else "Test"
        return (f"Dataset CIFAR10\n    Number of datapoints: {len(self)}\n"
                f"    Root location: {self.root}\n    Split: {split}")

    # --- reading -------------------------------------------------------------------------

    def _how_to_get_it(self):
        return (f"Pass download=True to fetch {self.url} (about 170 MB), or download that "
                f"archive yourself and extract it into {self.root}, so that "
                f"{self.folder / self.train_files[0]} exists.")

    def _load(self, name):
        """``(path, dict)`` of one file of the folder."""
        path = self.folder / name
        if not path.is_file():
            missing = f"file {path}" if self.folder.is_dir() else f"folder {self.folder}"
            listing = ", ".join(self._all_files)
            raise DatasetNotFoundError(
                f"CIFAR10: {missing} not found. The python-version files ({listing}) must be "
                f"in {self.folder}. {self._how_to_get_it()}")
        try:
            return path, _unpickle(path)
        except Exception as error:  # truncated, not a pickle, or a refused global
            raise self._corrupt(path, f"it cannot be unpickled ({type(error).__name__}: {error})")

    def _corrupt(self, path, problem):
        return DatasetCorruptError(
            f"CIFAR10: {path} is corrupt: {problem}. Delete {self.folder} and get the data again. "
            f"{self._how_to_get_it()}")

    def _read_class_names(self):
        path, meta = self._load(self.meta_file)
        names = meta.get("label_names")
        if not isinstance(names, list) or len(names) != NUM_CLASSES:
            raise self._corrupt(path, f"expected {NUM_CLASSES} 'label_names'")
        return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]

    def _read_batch(self, name):
        """One file's images as uint8 (N, 3, 32, 32) and labels as int64 (N,), checked."""
        path, batch = self._load(name)
        images, labels = batch.get("data"), batch.get("labels")
        row = int(np.prod(IMAGE_SHAPE))
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8
                and images.ndim == 2 and images.shape[1] == row):
            got = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
                   else type(images).__name__)
            raise self._corrupt(path, f"'data' must be a uint8 array of shape (N, {row}), "
                                      f"got {got}")
        if len(images) == 0:
            raise self._corrupt(path, "it holds no images")
        if not isinstance(labels, list) or len(labels) != len(images):
            got = len(labels) if isinstance(labels, list) else type(labels).__name__
            raise self._corrupt(path, f"'labels' must be a list of {len(images)} ints, got {got}")
        for index, label in enumerate(labels):  # before any conversion, which would truncate 1.7 to 1
            if not _is_class_index(label):
                raise self._corrupt(path, f"labels must be ints in 0..{NUM_CLASSES - 1}, "
                                          f"got {label!r} (label {index})")
        return images.reshape((-1,) + IMAGE_SHAPE), np.asarray(labels, dtype=np.int64)

    def _read_batches(self, names):
        batches = [self._read_batch(name) for name in names]
        if len(batches) == 1:
            return batches[0]
        return (np.concatenate([images for images, _ in batches]),
                np.concatenate([labels for _, labels in batches]))

    # --- downloading ---------------------------------------------------------------------

    def _is_complete(self):
        return all((self.folder / name).is_file() for name in self._all_files)

    def download(self):
        """Fetch, check and extract the archive, unless the folder is already complete.

        A previously downloaded archive with the right md5 is reused; the archive is kept
        beside the folder (like torchvision), so a damaged folder can be re-extracted offline.
        """
        if self._is_complete():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.folder):  # the partial files of a download that was killed
            if folder.is_dir():
                remove_orphans(folder, ".part")
        archive = self.root / self.filename
        if not (archive.is_file() and file_md5(archive) == self.md5):
            self._fetch(archive)
        self._extract(archive)

    def _fetch(self, archive):
        """Stream ``url`` into ``archive`` (atomically), checking the md5 on the way.

        ``read1`` returns what has arrived (up to 1 MB), so a server that trickles bytes meets the
        deadline too: the wait for one read is bounded by ``download_timeout``.
        """
        digest = hashlib.md5()
        deadline = time.monotonic() + self.download_deadline
        try:
            with urllib.request.urlopen(self.url, timeout=self.download_timeout) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"Downloading {self.filename}") as bar:
                    def chunks():
                        for chunk in iter(lambda: response.read1(1 << 20), b""):
                            if time.monotonic() > deadline:
                                raise DownloadError(
                                    f"CIFAR10: the download of {self.url} took longer than "
                                    f"{self.download_deadline} s and was given up (nothing kept). "
                                    f"Try again later, or get the archive another way and extract "
                                    f"it into {self.root}.")
                            digest.update(chunk)
                            bar.update(len(chunk))
                            yield chunk
                        if digest.hexdigest() != self.md5:
                            raise DownloadError(
                                f"CIFAR10: the md5 of {self.url} is {digest.hexdigest()}, expected "
                                f"{self.md5}; the download is damaged and was not kept. Try again, "
                                f"or extract a good copy into {self.root} yourself.")
                    _write_atomically(archive, chunks())
        except (urllib.error.URLError, OSError) as error:
            raise DownloadError(
                f"CIFAR10: could not download {self.url} ({error}); are you offline? "
                f"Get the archive another way and extract it into {self.root}, so that "
                f"{self.folder / self.train_files[0]} exists.") from error

    def _extract(self, archive):
        """Copy the known batch files out of the archive into ``folder``.

        Only members named ``cifar-10-batches-py/<known file>`` that are regular files are
        read, and we choose the output paths ourselves: a crafted archive cannot write
        outside ``folder`` (no path traversal, no links). Each file is written atomically.
        """
        wanted = {f"{self.base_folder}/{name}": name for name in self._all_files}
        self.folder.mkdir(exist_ok=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = wanted.pop(member.name.removeprefix("./"), None)
                    if name is None:
                        continue
                    if not member.isfile():
                        raise DatasetCorruptError(f"CIFAR10: {archive} member {member.name} "
                                                  "is not a regular file")
                    source = tar.extractfile(member)
                    _write_atomically(self.folder / name, iter(lambda: source.read(1 << 20), b""))
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DatasetCorruptError(f"CIFAR10: cannot extract {archive} ({error}); delete it and "
                                      f"download again. {self._how_to_get_it()}") from error
        if wanted:
            raise DatasetCorruptError(f"CIFAR10: {archive} lacks {', '.join(sorted(wanted))}; "
                                      "delete it and download again.")
