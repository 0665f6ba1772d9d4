"""Benchmark jaxvae's training against the PyTorch reference: ``python scripts/bench.py [--batch-sizes 32,256]``.

The same as ``jaxvae bench``; kept as a script so it runs from a checkout without the console entry point.
"""

import sys

from jaxvae.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
