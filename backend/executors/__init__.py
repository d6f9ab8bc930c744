"""Where a run executes: ``local`` (the runner's own process, backend.worker) or ``slurm`` (a job
per run through submitit, backend.executors.slurm). The UI may import this package: no torch here."""

EXECUTORS = ("local", "slurm")
