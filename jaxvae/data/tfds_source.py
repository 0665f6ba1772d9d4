"""MNIST and Fashion-MNIST through tensorflow-datasets' random-access ``data_source`` (no TensorFlow needed).

Online, TFDS downloads and prepares the data set once into its data dir; offline, it reads a data dir
prepared before. Offline without one, TFDS would retry its download for minutes: we check the download
host first and say at once what to do instead.
"""

from __future__ import annotations

import os
import socket

import numpy as np

from jaxvae.errors import UserError

DOWNLOAD_HOSTS = {
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
}


def _host_reachable(host: str) -> bool:
    """Whether ``host``'s name resolves: a quick sign of being online, in the resolver's own time."""
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _read(source) -> tuple[np.ndarray, np.ndarray]:
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e["image"]) for e in examples]) if examples else np.zeros((0, 28, 28, 1), np.uint8)
    labels = np.array([int(e["label"]) for e in examples], np.int64)
    return images.reshape(images.shape[0], *images.shape[1:3]), labels  # (N, 28, 28)


def _read_splits(tfds, name: str, data_dir: str | None, download: bool):
    """Both splits; TFDS's own absl warnings (a data set not found where it looked) are kept off stderr, where
    jaxvae's one line says what happened and what to do."""
    from absl import logging as absl_logging

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        splits = {s: tfds.data_source(name, split=s, data_dir=data_dir, download=download) for s in ("train", "test")}
        return {split: _read(source) for split, source in splits.items()}
    finally:
        absl_logging.set_verbosity(verbosity)


def load(name: str, data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images uint8 (N, H, W), labels), "test": ...}`` of a TFDS data set."""
    import tensorflow_datasets as tfds

    if name not in DOWNLOAD_HOSTS:
        raise UserError(f"tfds: unknown data set {name!r}; known: {', '.join(DOWNLOAD_HOSTS)}")
    try:
        return _read_splits(tfds, name, data_dir, download=False)
    except Exception:  # not prepared (or not readable) in data_dir: download and prepare it
        pass
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    if not _host_reachable(DOWNLOAD_HOSTS[name]):
        raise UserError(
            f"tfds: {name} is not prepared in {where} and its download host is unreachable (offline?); "
            f"prepare it on a machine that is online and pass --data-dir, or use --dataset idx:DIR"
        )
    try:
        return _read_splits(tfds, name, data_dir, download=True)
    except Exception as exc:  # TFDS raises many types for a failed download or a damaged data dir
        raise UserError(f"tfds: cannot download or read {name} in {where} ({type(exc).__name__}: {exc})") from None
