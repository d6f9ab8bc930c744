"""Running runs: the pipeline that chains the stages, the runner (worker) and its supervisor, device
slots and locks, cancellation, the executors (local processes, Slurm jobs) and the sinks that carry
a run's events and results into the store."""
