"""Suite-wide setup, before any test imports JAX: one persistent compilation cache for the session.

Many tests (and the ``jaxvae`` processes they start, which inherit the environment) compile the same
programs: a small training run compiles in ~15 s on a 2-core CPU and loads from the cache in ~1 s. The
cache is JAX's own, keyed on the program and the devices; it lives in a temporary folder removed at the end.
``JAX_COMPILATION_CACHE_DIR`` set by the caller is used as given (and kept).
"""

import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="jaxvae-test-jit-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
else:
    _CACHE = None


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)
