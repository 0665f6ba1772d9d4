"""A training run and its folder: settings (``config``), the run's pieces and compiled functions (``trainer``),
the loop (``training``), checkpoints, the folder's files, the report and plots, progress, several processes
(``distributed``), and what ``jaxvae evaluate``, ``sample`` and ``export`` do with a finished run (``commands``).
Ensembles: the members of the lists (``members``), their setup (``ensemble``), loop (``ensemble_training``)
and report (``ensemble_report``)."""
