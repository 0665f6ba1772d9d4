"""jaxvae against torch_ref: the parity harness (``method``: float64 as the arbiter), each side's capture
(``capture``, ``jax_side``, ``torch_side``), and ``jaxvae parity`` (``check``, ``report``). torch is
imported where it is used, never by ``import jaxvae``."""
