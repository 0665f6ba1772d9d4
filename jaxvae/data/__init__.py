"""The data a run trains on: data sets (``dataset``), their sources (``mnist5k``, ``idx``, ``tfds_source``), the
loader ``--dataset`` calls (``load``) and binarised images for a Bernoulli decoder (``binarize``)."""

from jaxvae.data.dataset import Dataset, Split, to_split
from jaxvae.data.load import DATASETS, load_dataset
from jaxvae.data.mnist5k import load_mnist5k

__all__ = ["DATASETS", "Dataset", "Split", "load_dataset", "load_mnist5k", "to_split"]
