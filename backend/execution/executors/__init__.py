"""Executors: where and how a queued run executes (this machine's devices, a Slurm cluster, a plugin's).

Each executor owns its whole life cycle behind one contract (``base.py``):

* :class:`Executor` (one registered instance per name; light) — availability and its reason
  (``unavailable``), the workspace defaults it fills from ``greentui.toml`` (``apply_defaults``), its
  queue-time checks (``check``), how its runner starts (``start_runner``), cancel (``cancel``), the
  files Run detail tails (``log_files``, ``job_summary``), the columns it adds to the Queue screen
  (``queue_columns``), the states its jobs report (``states``) and the settings only it reads
  (``settings``).
* :class:`Dispatcher` (made by ``Executor.dispatcher`` in a runner process) — placing queued runs and
  following them until they end; the runner loop (``backend.execution.worker``) drives it.

``local.py`` runs each run as a process on a free device slot of this machine; ``scheduler.py`` is the
life cycle of any executor that hands runs to a batch scheduler (reserve → submit → follow →
requeue → ingest → close), which ``slurm.py`` fills in for Slurm (sbatch through submitit, squeue,
scancel). ``registry.py`` knows which exist — the built-in two and the ``greentui.executors`` entry
points of installed packages — and the service layer, the supervisor and the runner ask it; none of
them names an executor.

Adding one (say Kubernetes): a module with an ``Executor`` subclass (name, help, ``unavailable``,
``dispatcher``, and ``log_files`` for its pods' logs) and a ``SchedulerDispatcher`` subclass
(``submit``, ``query``, ``outcome``, ``send_cancel``, ``find_job``), plus one entry point. Nothing
else changes: the store's ``jobs`` table, the Queue columns, Run detail's log pane, cancel and the
runner start are generic.
"""

from backend.execution.executors.base import Dispatcher, Executor, QueueColumn, RunnerContext, run_executor
from backend.execution.executors.registry import executor, executor_of, executors, register

__all__ = ["Dispatcher", "Executor", "QueueColumn", "RunnerContext", "executor", "executor_of", "executors",
           "register", "run_executor"]
