"""Suite-wide setup, before any test imports JAX: one persistent compilation cache for the session, the XLA
compile flags, and how many pytest-xdist workers ``-n auto`` starts.

Many tests (and the ``jaxvae`` processes they start, which inherit the environment) compile the same
programs: a small training run takes 11 s on a 2-core CPU with nothing cached, 5 s with its programs cached. The
cache is JAX's own, keyed on the program and the devices; it lives in a temporary folder removed at the end,
shared by the xdist workers (they inherit the variable). ``JAX_COMPILATION_CACHE_DIR`` set by the caller is used
as given (and kept).

Most of the suite's time is XLA compiling, which runs on one core, and waiting for the processes some tests start:
one worker more than the cores keeps them busy (on a 2-core Zen 4, `python -m pytest -q` took 6:09 and 6:56 with 3
workers, 6:59 with 2 and 6:37 with 4; another day 5:05 with 3 and 5:00 with 2: no gain beyond that machine's noise,
and no loss). More than four would mostly add memory (each worker holds JAX and torch). Each test file runs whole on
one worker (``--dist loadfile``): a file's tests share their programs and fixtures, so each is traced and compiled
by one process, not by every worker that draws one of its tests (the same Zen 4, runs taken in turn: 5:22, 4:53 and
5:34 by file, 9.5-10.8 CPU-minutes; 5:57, 5:53 and 5:30 test by test, 10.7-11.6).
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

# Cache every compilation, the small ones included (by default JAX keeps only those that took 1 s): a
# `jaxvae parity` process then starts from what the tests before it compiled.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

MAX_WORKERS = 4
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = max(1, min(MAX_WORKERS, CORES + 1))  # what ``-n auto`` starts


def known_to_xla(*flags: str) -> list[str]:
    """Those of ``flags`` that this jaxlib's XLA knows (it aborts a process on a flag it does not), each asked of a
    child process."""
    probe = [sys.executable, "-c", "import jax; jax.devices('cpu')"]
    env, quiet = {**os.environ, "JAX_PLATFORMS": "cpu"}, {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    children = {f: subprocess.Popen(probe, env={**env, "XLA_FLAGS": f}, **quiet) for f in flags}
    return [f for f, child in children.items() if child.wait() == 0]


# The suite's programs are compiled for the speed of compiling, not of running (a level in the caller's XLA_FLAGS
# leaves XLA's defaults, as .ci/run's second leg does): LLVM optimisation level 1, not XLA's default 3 (a fifth less
# time: the README's command on a 2-core Zen 4, runs taken in turn, 4:09 and 4:18 against 5:08 and 5:05) nor 0 (its
# programs run slower than the compiling saves: 5:11 against 4:22, taken in turn another day); XLA's older
# elemental fusion emitters where this XLA still has them (jax 0.8 to 0.10): a training chunk compiles in 2.8 s
# instead of 4.2, the same speed once compiled, and the README's command takes a fifth less again; and where the
# workers outnumber the cores, each program compiled on one thread, not split into parts compiled on several, which
# then only adds the splitting's work (another 5-15 %; docs/benchmarks.md). Some programs round differently under
# these flags, as they do on another CPU, which no verdict of the suite depends on (float32 is compared with float64,
# or bitwise between two runs of one build).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    _WANTED = ["--xla_cpu_use_fusion_emitters=false"]
    if WORKERS > CORES:
        _WANTED.append("--xla_cpu_parallel_codegen_split_count=1")
    _FLAGS = [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=1", *known_to_xla(*_WANTED)]
    os.environ["XLA_FLAGS"] = " ".join(_FLAGS).strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # removed at exit, even after a usage error (no session ran)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxvae-test-jit-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    return WORKERS
