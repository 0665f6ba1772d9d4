"""A training run and its folder: settings (``config``), an ensemble's members (``members``; a single run is an
ensemble of one), the engine that sets a run up and compiles its functions (``engine``), the loop (``training``),
checkpoints, the folder's files, the report and plots, progress, several processes (``distributed``), what
``jaxvae evaluate``, ``sample`` and ``export`` do with a finished run (``commands``), ``jaxvae bench``
(``bench``), and the command line that calls them all (``cli``)."""
