"""Executors that run a study's runs, each as its own ``dimcollapse train`` process.

One small interface (``base.Executor``: submit, poll, cancel) with three implementations: ``local``
(one after another or N at once, devices and CPU threads split between runs), ``slurm`` (one job array
through submitit, tasks per node = devices, requeue-safe) and ``inline`` (the caller's function in this
process; for tests of the study's bookkeeping). Nothing here imports the training engine.
"""
