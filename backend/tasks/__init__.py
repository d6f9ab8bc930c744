"""The study's seven lm-eval tasks and their local (offline) variants; see ``registry``."""

from .registry import (ALIASES, LOCAL_PREFIX, STUDY_TASKS, TASK_LABELS, TASKS, TaskSpec, build_local_task_dir,
                       builtin_task_dirs, builtin_yaml, bundled_data_dir, resolve_tasks, task_spec,
                       validate_task_file)

__all__ = ["ALIASES", "LOCAL_PREFIX", "STUDY_TASKS", "TASK_LABELS", "TASKS", "TaskSpec", "build_local_task_dir",
           "builtin_task_dirs", "builtin_yaml", "bundled_data_dir", "resolve_tasks", "task_spec",
           "validate_task_file"]
