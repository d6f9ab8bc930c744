"""The workbench's screens: Runs, Queue, Models (modes), New run, Run detail, Compare (pushed)."""
