"""jaxvae against torch_ref: the parity harness (``method``: float64 as the arbiter), each side's capture
(``capture``, ``jax_side``, ``torch_side``), ``jaxvae parity`` (``check``, ``report``) and the throughput
benchmark ``jaxvae bench`` (``bench``). torch is imported where it is used, never by ``import jaxvae``."""
