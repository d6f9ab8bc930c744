"""One run, stage by stage: load → vanilla baseline (reused when cached) → prune → LoRA → evaluate.

The pipeline is the study as code. It owns ordering and bookkeeping only; the work itself lives in
``prune``, ``finetune``, ``evaluate``, ``perplexity`` and ``energy``. Each task's result is written
in its own transaction the moment it finishes, so a killed run keeps every whole task and no half
one. Heavy libraries are imported inside ``execute_run`` only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

from backend.errors import GreentuiError
from backend.execution.control import CancelWatch, RunCancelled, process_start_time
from backend.execution.events import EventSink
from backend.execution.sinks import FileRecorder, RunRecorder, as_recorder, power_callback
from backend.measure.machine import device_name, fingerprint, library_versions
from backend.schema.runconfig import RunConfig
from backend.store import Store
from backend.workspace import configure_hf_environment, ensure_run_dir, release_space, reserve_space, run_dir

__all__ = ["RunCancelled", "execute_run", "quiet_libraries", "resolve_device"]


def quiet_libraries() -> None:
    """Silence library progress bars and chatter: greentui shows its own progress (rich / TUI).

    Called by the CLI's ``run`` and by the runner before the heavy imports happen.
    """
    import logging
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "codecarbon", "torch_pruning", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def execute_run(target: Store | RunRecorder, workspace: Path, run_id: int, sink: EventSink | None = None,
                device: str | None = None) -> str:
    """Execute a run already marked running; return its final status. Never raises for run errors.

    ``target`` is where the run is recorded: the workspace's ``Store`` for a local run (through a
    ``sinks.StoreRecorder``), a ``sinks.FileRecorder`` for a Slurm job (which must not open SQLite on
    a compute node).
    ``device`` places the run where its executor put it (``cuda`` = the GPUs its process sees,
    ``cpu``); None keeps the run's own ``device`` setting (``greentui run`` in the foreground).
    The run's cancel flag is obeyed at safe points (see ``backend.execution.control.CancelWatch``).
    """
    store = as_recorder(target)
    run = store.require_run(run_id)
    folder = run_dir(workspace, run_id)
    watch = CancelWatch(store, run_id)
    sampler = None
    try:
        if not isinstance(store, FileRecorder):  # a Slurm job writes only into its run folder
            reserve_space(workspace)  # what the error path below may need on a full disk
        ensure_run_dir(workspace, run_id)  # a real folder, never a planted symlink
        sink = sink or EventSink(store, run_id, folder)
        sink.checkpoint = watch.check
        cfg = RunConfig.from_dict(run["config"])
        if device:
            cfg.device = device
        (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        cfg.validate()
        configure_hf_environment(workspace)
        sampler = _start_power_sampler(power_callback(store, run_id))
        # Library chatter (tqdm bars lm-eval forces on, warnings) goes to the run folder, not the
        # user's terminal, where greentui shows its own progress.
        with (folder / "libraries.log").open("a") as chatter, contextlib.redirect_stderr(chatter):
            _Pipeline(store, workspace, run, cfg, folder, sink, watch).execute()
        status, error = "done", None
    except RunCancelled as exc:
        status, error = exc.status, exc.reason
        if watch.requested_at and sink is not None:
            sink.log(f"stopped {time.time() - watch.requested_at:.1f} s after the cancel request; "
                     "finished tasks are kept")
    except GreentuiError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a bug or a library failure: keep the traceback in the run folder
        status, error = "failed", _describe_failure(exc)
        _best_effort(lambda: (folder / "traceback.txt").write_text(traceback.format_exc()))
    finally:
        if sampler is not None:
            _best_effort(sampler.stop)
    if sink is not None:
        sink.checkpoint = None  # closing the run must not be interrupted by its own cancel flag
    _close_run(store, workspace, run_id, status, error, sink, final=status != "interrupted")
    return status


def _best_effort(action) -> bool:
    """Run ``action``; a full disk or a failing store must not stop the error path."""
    try:
        action()
        return True
    except (OSError, sqlite3.Error):
        return False


def _describe_failure(exc: BaseException) -> str:
    """One line; a full disk says so in words, with the file it was writing."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return f"the disk is full (No space left on device){where}; free space and run it again"
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _close_run(store: RunRecorder, workspace: Path, run_id: int, status: str, error: str | None,
               sink: EventSink | None, final: bool = True) -> None:
    """Record the run's end; never leave it ``running``.

    The status row comes first (it is what matters); the events after it are best effort. When the
    write fails because the disk is full, the space reserved at the start is released and the write
    is tried again: the error path must not need space it may not have. ``final=False`` (the machine
    stopped the run: a scheduler may requeue it) records a log line instead of the run's end, which
    its executor records once it knows.
    """
    if not _best_effort(lambda: store.finish_run(run_id, status, error)):
        if not isinstance(store, FileRecorder):
            release_space(workspace)
        store.finish_run(run_id, status, error)
    if sink is not None and not final:
        _best_effort(lambda: sink.log(f"{error}; finished tasks are kept"))
    elif sink is not None:
        if error:
            _best_effort(lambda: sink.emit("error", message=error))
        _best_effort(lambda: sink.emit("done", status=status))


def discard_partial_model(folder: Path) -> None:
    """An earlier attempt killed while saving left part of ``model/``: remove it, so that the model is
    saved whole (``save_model`` writes only into an empty folder)."""
    import shutil
    if folder.is_dir() and any(folder.iterdir()):
        shutil.rmtree(folder)


def _start_power_sampler(on_sample):
    """Live power at ~1 Hz, recorded by ``on_sample`` (``sinks.power_callback``: thread-safe)."""
    from backend.measure.energy import PowerSampler

    sampler = PowerSampler(on_sample=on_sample)
    sampler.start()
    return sampler


class _Pipeline:
    """The stages of one run; see the module docstring for the order and its reasons."""

    def __init__(self, store: RunRecorder, workspace: Path, run: dict[str, Any], cfg: RunConfig,
                 folder: Path, sink: EventSink, watch: CancelWatch | None = None):
        self.store, self.workspace, self.run, self.cfg = store, workspace, run, cfg
        self.folder, self.sink = folder, sink
        self.watch = watch or CancelWatch(store, run["id"])
        self.run_id = run["id"]
        self.session: Any = None
        self.idle: dict[str, Any] | None = None
        self.vanilla: Any = None          # the vanilla model kept for the paired windows (issue #18)
        self.design = cfg.energy_design if cfg.paired_energy() else "sequential"
        self.windows_spent = 0.0          # seconds of paired windows so far (the --repeats auto budget)
        self.stages = cfg.stages(run.get("kind") or "experiment")

    # ------------------------------------------------------------------ helpers
    def stage(self, name: str):
        sink, stages = self.sink, self.stages

        watch = self.watch

        class _Stage:
            def __enter__(self_inner):
                watch.check(force=True)  # a safe point: between stages
                self_inner.t0 = time.time()
                sink.stage = name
                self.store.update_run(self.run_id, stage=name)
                sink.emit("stage_start", stage=name, index=stages.index(name), total=len(stages))
                return self_inner

            def __exit__(self_inner, exc_type, *rest):
                if exc_type is None:
                    sink.emit("stage_end", stage=name, seconds=round(time.time() - self_inner.t0, 3))
                return False
        return _Stage()

    @contextlib.contextmanager
    def stage_energy(self, name: str):
        """Meter a whole stage (pruning, LoRA) and record its energy as the pruned variant's
        ``<stage>_energy_kwh``: what a study's amortised accounting charges the pruned model before it
        saves anything (issue #20). Nothing is recorded when the meters are off or the stage fails."""
        if self.session is None:
            yield
            return
        meter = self.session.task(f"greentui-stage-{name}")
        with meter:
            yield
        r = meter.result or {}
        self.store.save_metric(self.run_id, "pruned", f"{name}_energy_kwh", r.get("energy_kwh"),
                               {"meter": r.get("meter"), "seconds": r.get("seconds"),
                                "nvml_joules": r.get("nvml_joules")})

    def gpus(self, device: str) -> int:
        """GPUs this run spreads its model over (``--gpus N``; only on CUDA)."""
        if not device.startswith("cuda"):
            return 1
        return max(1, int(getattr(self.cfg, "gpus", None) or self.run["config"].get("gpus") or 1))

    def note_shared_cpu(self, device: str) -> None:
        """With ``--cpu-slots N`` > 1 this CPU run shares the CPU: say so in its energy quality."""
        slots = int(os.environ.get("GREENTUI_CPU_SLOTS") or 1)
        if device != "cpu" or slots <= 1:
            return
        note = (f"the CPU was shared by up to {slots} concurrent runs (--cpu-slots {slots}): per-task time, "
                "and a counter's energy (RAPL sees the whole package), include the other runs' work; the "
                "CPU-time estimate charges each run its own CPU time")
        self.provenance["energy_note"] = note
        self.provenance["cpu_slots"] = slots
        self.store.save_metric(self.run_id, "run", "cpu_slots", slots, {"energy_note": note})
        self.sink.log(f"warning: {note}")

    # ------------------------------------------------------------------ stages
    def execute(self) -> None:
        cfg, sink = self.cfg, self.sink
        with self.stage("load"):
            # the stage shows at once; importing the libraries takes seconds on a busy CPU
            sink.emit("progress", stage="load", fraction=0.0, message="importing PyTorch and transformers")
            import torch

            from backend.stages.model_io import load_model

            device = resolve_device(cfg.device)
            torch.manual_seed(cfg.seed)
            if cfg.measure_energy:  # before the model occupies the device: the machine's idle draw
                from backend.measure.energy import idle_power
                idle = idle_power(3.0 if device.startswith("cuda") else 1.0)
                self.idle = idle
                self.store.save_metric(self.run_id, "run", "idle_power_w", idle["watts"], idle)
                if idle["watts"] is not None:
                    sink.log(f"idle power {idle['watts']:.1f} W ({idle['source']}"
                             f"{', estimate' if idle['is_estimate'] else ''})")
                from backend.measure.energy import EnergySession
                # one CodeCarbon tracker for the whole run (task API): hardware detected once
                self.session = EnergySession(country=cfg.country).prepare()
            model_id = self.run["model_id"] or self.store.register_model(cfg.model, cfg.trust_remote_code)
            model_row = self.store.get_model(model_id)
            if model_row is None:  # `models rm` refuses a model that runs use: only a store changed by hand
                raise GreentuiError(f"run {self.run_id}: its model {model_id} is not in the store")
            if not cfg.no_prune:  # before loading: a GPT-2 is refused at once, not after its baseline
                from backend.stages.models import check_prunable
                check_prunable(model_row.get("arch"), model_row["ref"])
            self.store.update_run(self.run_id, model_id=model_id, device=device)
            sink.log(f"loading {model_row['ref']} on {device}")
            model, tokenizer = load_model(model_row["ref"], device=device, gpus=self.gpus(device),
                                          trust_remote_code=cfg.trust_remote_code)
            self.watch.attach(model)  # a safe point before every forward: lm-eval batches, LoRA, calibration
            params_before = sum(p.numel() for p in model.parameters())
            self.store.update_run(self.run_id, params_before=params_before, params_after=params_before)
            sink.log(f"{params_before:,} parameters, {getattr(model.config, 'num_hidden_layers', '?')} decoder layers")
            self.provenance = {"device": device, "device_name": device_name(device), "seed": cfg.seed,
                               "versions": library_versions(), "model": model_row["ref"]}
            from backend.schema.tasks import data_digest, resolve_tasks
            self.fingerprint = dict(fingerprint(device), data=data_digest(cfg.data_dir, resolve_tasks(cfg.tasks)),
                                    seed=cfg.seed, num_fewshot=cfg.num_fewshot, limit=cfg.limit)
            self.note_shared_cpu(device)

        with self.stage("baseline"):
            self.baseline(model, tokenizer, model_row["ref"], device)
            self.efficiency(model, tokenizer, "vanilla", device)

        if cfg.no_prune:
            return
        self.keep_vanilla(model, device)
        if self.saved_model_ready():  # a job the scheduler restarted: its earlier attempt pruned and saved it
            del model
            model, tokenizer = self.load_saved_model(device)
        else:
            model, tokenizer = self.prune_and_recover(model, tokenizer, device, params_before)
        with self.stage("evaluate"):
            self.evaluate(model, tokenizer, "pruned", self.run_id, device)
            self.vanilla = None  # the paired windows are over: the copy's memory goes back
            self.efficiency(model, tokenizer, "pruned", device)

    def keep_vanilla(self, model, device: str) -> None:
        """Under the paired protocol, a copy of the vanilla model stays for the paired windows; which
        design that allows (paired: both on the device; blocked: one at a time; sequential: no room) is
        recorded in the run's config (``energy_design``) and its ``energy_design`` metric, with why."""
        if self.design == "sequential":
            return
        from backend.stages.paired import keep_vanilla
        self.vanilla, design, why = keep_vanilla(model, self.design, device, self.gpus(device))
        self.store.save_metric(self.run_id, "run", "energy_design", None,
                               {"design": design, "asked": self.cfg.energy_design, "why": why})
        if design != self.cfg.energy_design:
            self.run["config"] = dict(self.run["config"], energy_design=design)
            self.store.update_run(self.run_id, config=self.run["config"])
        self.design = design
        self.sink.log(f"energy design: {design} ({why})")

    def prune_and_recover(self, model, tokenizer, device: str, params_before: int):
        """Prune (saved into the run folder's ``model/`` as pruning left it), recover with LoRA (the adapter
        in ``lora/adapter``); the model."""
        cfg, sink = self.cfg, self.sink
        with self.stage("prune"), self.stage_energy("prune"):
            from backend.stages.prune import PruneConfig, prune_model
            pcfg = PruneConfig.of(cfg, device=device)
            report = prune_model(model, tokenizer, pcfg, progress=sink.progress_for("prune"))
            for w in report.get("warnings", []):
                sink.log(f"warning: {w}")
            params_after = sum(p.numel() for p in model.parameters())
            self.store.update_run(self.run_id, params_after=params_after)
            sink.log(f"pruned: {params_before:,} → {params_after:,} parameters "
                     f"({params_after / params_before:.3f})")
            (self.folder / "prune_report.json").write_text(json.dumps(report, indent=2, default=str))
            if cfg.ppl_limit and not cfg.no_lora:  # what LoRA has to recover, kept beside the final figure
                self.perplexity(model, tokenizer, "pruned", self.run_id, "prune",
                                metric="ppl_wikitext2_before_lora", label="pruned, before LoRA,")
        # The pruned model as pruning left it; LoRA's adapter is saved apart (lora/adapter), so
        # `greentui export-model --merge-lora` merges it with peft (or exports the model without it)
        # and a restarted attempt merges it instead of training again.
        from backend.stages.model_io import save_model
        discard_partial_model(self.folder / "model")
        save_model(model, tokenizer, self.folder / "model",
                   report={"run_id": self.run_id, "config": cfg.to_dict(), "lora_merged": False})
        if not cfg.no_lora:
            model = self.recover(model, tokenizer, device)
        return model, tokenizer

    def recover(self, model, tokenizer, device: str):
        """The LoRA stage: train the adapter (saved in lora/adapter), return the merged model."""
        cfg, sink = self.cfg, self.sink
        with self.stage("lora"), self.stage_energy("lora"):
            from backend.stages.finetune import LoraSpec, finetune_lora
            spec = LoraSpec.of(cfg, merge=True)
            model, lora_report = finetune_lora(
                model, tokenizer, spec, self.folder / "lora", device=device,
                progress=sink.progress_for("lora"), on_loss=lambda d: sink.emit("loss", **d))
            (self.folder / "lora_report.json").write_text(json.dumps(lora_report, indent=2, default=str))
            if lora_report.get("eval_loss_after") is not None:
                self.store.save_metric(self.run_id, "pruned", "lora_eval_loss", lora_report["eval_loss_after"])
        return model

    def saved_model_ready(self) -> bool:
        """True when an earlier attempt of this run saved its pruned model whole (the report is the last
        file ``save_model`` writes)."""
        from backend.stages.model_io import REPORT
        return (self.folder / "model" / REPORT).is_file()

    def load_saved_model(self, device: str):
        """The earlier attempt's pruned model, loaded instead of pruning again, then its LoRA adapter merged
        (or, when that attempt stopped before the adapter was whole, LoRA trained again): the tasks it
        evaluated and the ones left are then measured on the same weights."""
        from backend.stages.model_io import REPORT, load_model
        saved = self.folder / "model"
        with self.stage("prune"):
            self.sink.log("an earlier attempt of this run pruned the model: loading it from model/ instead of "
                          "pruning again")
            model, tokenizer = load_model(saved, device=device, gpus=self.gpus(device),
                                          trust_remote_code=self.cfg.trust_remote_code)
            self.watch.attach(model)
            self.store.update_run(self.run_id, params_after=sum(p.numel() for p in model.parameters()))
        if self.cfg.no_lora:
            return model, tokenizer
        # a folder saved before the adapter was kept apart holds the merged model
        merged = json.loads((saved / REPORT).read_text()).get("lora_merged") is not False
        adapter = self.folder / "lora" / "adapter"
        if merged:
            with self.stage("lora"):
                self.sink.log("LoRA recovery: done by the earlier attempt (merged into model/)")
        elif (self.folder / "lora_report.json").is_file() and (adapter / "adapter_model.safetensors").is_file():
            with self.stage("lora"):
                from backend.stages.finetune import merge_adapter
                self.sink.log("LoRA recovery: done by the earlier attempt; merging its adapter (lora/adapter)")
                model = merge_adapter(model, adapter)  # the same module: the cancel hook stays
        else:
            model = self.recover(model, tokenizer, device)
        return model, tokenizer

    def baseline(self, model, tokenizer, model_ref: str, device: str) -> None:
        cfg = self.cfg
        key = cfg.baseline_key(model_ref, device)
        if cfg.no_prune:  # this run *is* a baseline
            self.store.update_run(self.run_id, baseline_key=key)
            self.store.save_metric(self.run_id, "run", "fingerprint", None, self.fingerprint)
            self.evaluate(model, tokenizer, "vanilla", self.run_id, device)
            return
        why_not: list[str] = []
        cached = self.store.find_baseline(key, cfg.tasks, fingerprint=self.fingerprint,
                                          max_age_s=cfg.baseline_max_age_days * 86400, why_not=why_not)
        reuse = {"key": key, "reused": cached["id"] if cached else None, "passed_over": why_not,
                 "rule": "same model, tasks, limit, few-shot, seed, data digest, hardware and software "
                         f"fingerprint, younger than {cfg.baseline_max_age_days:g} days",
                 "applies_to": "accuracy" if self.design != "sequential" else "accuracy and energy"}
        self.store.save_metric(self.run_id, "run", "baseline_reuse", cached["id"] if cached else None, reuse)
        for line in why_not:
            self.sink.log(f"not reusing the vanilla baseline of {line}")
        if cached:
            self.store.update_run(self.run_id, parent_run_id=cached["id"])
            which = cached.get("label") or f"run {cached['id']}"
            self.sink.log(f"reusing the vanilla baseline of {which} for {reuse['applies_to']} (key {key}: "
                          f"{reuse['rule']})")
            self.sink.emit("progress", stage="baseline", fraction=1.0, message=f"reused {which}")
            return
        base_cfg = RunConfig.from_dict(dict(cfg.to_dict(), no_prune=True, repeats=cfg.vanilla_passes()))
        base_id = self.store.create_run(self.run["model_id"] or self.store.require_run(self.run_id)["model_id"],
                                        "baseline", base_cfg.to_dict(), status="running", pid=os.getpid(),
                                        device=device, baseline_key=key,
                                        label=f"baseline for run {self.run_id}")
        mine = self.store.require_run(self.run_id)
        self.store.update_run(base_id, pid_start=process_start_time(), runner_id=mine.get("runner_id"),
                              executor=mine.get("executor"), slot=mine.get("slot"))
        self.watch.watch(base_id)  # cancelling the baseline's row stops this run too
        self.store.update_run(self.run_id, parent_run_id=base_id)
        self.store.save_metric(base_id, "run", "fingerprint", None, self.fingerprint)
        if self.idle is not None:  # the baseline's energy above idle uses the same idle draw
            self.store.save_metric(base_id, "run", "idle_power_w", self.idle["watts"], self.idle)
        self.sink.log(f"evaluating the vanilla baseline as run {base_id}")
        try:
            self.evaluate(model, tokenizer, "vanilla", base_id, device)
        except BaseException as exc:
            if isinstance(exc, RunCancelled) and exc.status == "interrupted":
                raise  # stopped by the machine: the executor closes the baseline, or the job resumes it
            status = "cancelled" if isinstance(exc, RunCancelled) else "failed"
            self.store.finish_run(base_id, status, f"{type(exc).__name__}: {exc}")
            raise
        self.store.finish_run(base_id, "done")

    def efficiency(self, model, tokenizer, variant: str, device: str) -> None:
        """The efficiency stage's points for one variant (``--efficiency-batches``), on this run."""
        cfg = self.cfg
        if not cfg.efficiency_batches:
            return
        from backend.stages.efficiency import measure_efficiency
        stage = self.sink.stage or "evaluate"
        self.sink.log(f"efficiency {variant}: batches {', '.join(map(str, cfg.efficiency_batches))} × "
                      f"{cfg.efficiency_seq_len} tokens")
        rows = measure_efficiency(model, tokenizer, cfg.efficiency_batches, seq_len=cfg.efficiency_seq_len,
                                  device=device, session=self.session, variant=variant,
                                  progress=self.sink.progress_for(stage))
        self.store.save_efficiency(self.run_id, variant, rows)  # a Slurm job's FileRecorder files them
        for r in rows:
            jpt = "—" if r["j_per_token"] is None else f"{r['j_per_token']:.3g} J/token"
            self.sink.log(f"efficiency {variant} batch {r['batch_size']}: {r['tokens_per_s']:.0f} tokens/s, {jpt}")

    def evaluate(self, model, tokenizer, variant: str, target_run: int, device: str) -> None:
        """Evaluate every task (one transaction each), then WikiText-2 perplexity."""
        from backend.schema.tasks import resolve_tasks
        from backend.stages.evaluate import evaluate_model

        cfg, sink = self.cfg, self.sink
        stage = sink.stage or "evaluate"
        # A Slurm job's baseline has no id yet (placeholder < 0): its lm-eval files stay in this run's folder.
        out_dir = run_dir(self.workspace, target_run) if target_run > 0 else self.folder / "baseline"
        batch = cfg.batch_size if cfg.batch_size == "auto" else int(cfg.batch_size)
        # a job the scheduler restarted resumes in its run folder: the tasks it finished stay as they are
        kept = self.store.finished_tasks(target_run, variant)
        tasks = [t for t in resolve_tasks(cfg.tasks) if t not in kept]
        if kept:
            sink.log(f"{variant}: {', '.join(sorted(kept))} finished before the restart: kept, not evaluated again")
        if not tasks:
            sink.emit("progress", stage=stage, fraction=1.0, message="every task finished before the restart")
        paired = self.paired_meter(model, tokenizer, device, batch) if variant == "pruned" else None
        captured: dict[str, list[Any]] = {}
        results = [] if not tasks else evaluate_model(
            model, tokenizer, tasks, data_dir=cfg.data_dir, limit=cfg.limit, num_fewshot=cfg.num_fewshot,
            batch_size=batch, device=device, out_dir=out_dir, measure_energy=cfg.measure_energy,
            country=cfg.country, progress=sink.progress_for(stage), seed=cfg.seed, repeats=cfg.vanilla_passes(),
            cooldown=cfg.cooldown, session=self.session,
            on_requests=(lambda task, reqs: captured.__setitem__(task, reqs)) if paired else None)
        for row in results:
            prov = dict(self.provenance, **(row.get("provenance") or {}))
            row = dict(row, provenance=prov)
            if paired is not None:  # saves the row with its paired windows
                self.measure_pairs(paired, row, captured.pop(row["task"], []), len(tasks), stage)
            else:
                self.store.save_task_result(target_run, variant, row["task"], row)
            wh = None if row.get("energy_kwh") is None else row["energy_kwh"] * 1000
            sink.emit("result", variant=variant, task=row["task"], acc=row.get("acc"),
                      acc_norm=row.get("acc_norm"), wh=wh, meter=row.get("meter"), run=target_run)
        if cfg.ppl_limit and not self.store.has_metric(target_run, variant, "ppl_wikitext2"):
            self.perplexity(model, tokenizer, variant, target_run, stage)

    def paired_meter(self, model, tokenizer, device: str, batch: int | str):
        """The paired windows' meter for this run's evaluate stage, or None (sequential, no meters)."""
        if self.vanilla is None or self.session is None:
            return None
        from backend.stages.evaluate import counting_lm, resolve_batch_size
        from backend.stages.paired import PairedMeter
        bs = resolve_batch_size(batch, device)
        return PairedMeter(self.vanilla, model, lm_of=lambda m: counting_lm(m, tokenizer, bs, device),
                           session=self.session, device=device, design=self.design, window_s=self.cfg.window_s,
                           sample=self.cfg.energy_sample, checkpoint=lambda: self.watch.check(force=True))

    def measure_pairs(self, meter, row: dict[str, Any], requests: list[Any], n_tasks: int, stage: str) -> None:
        """A task's paired windows (A B B A …), then its pruned row with the paired mean as its energy and
        every window (both variants) in the run's ``energy_repeats``."""
        cfg = self.cfg
        task = row["task"]
        spent = time.monotonic()
        progress = self.sink.progress_for(stage)
        result = meter.measure_task(task, requests, repeats=cfg.fixed_repeats(), ci_target=cfg.ci_target,
                                    max_repeats=cfg.max_repeats, budget_s=cfg.repeats_budget_s / max(n_tasks, 1),
                                    progress=lambda msg, frac: progress(f"paired energy: {msg}", frac))
        self.windows_spent += time.monotonic() - spent
        mine = [w for w in result.windows if w["variant"] == "pruned"]
        if mine:
            for key in ("seconds", "energy_kwh", "energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh", "nvml_joules"):
                vals = [w.get(key) for w in mine]
                row[key] = None if any(v is None for v in vals) else sum(vals) / len(vals)
        ci = result.interval()
        sample = mine[0]["sample_n"] if mine else None
        row["provenance"] = dict(row["provenance"], energy_protocol={
            "design": self.design, "pairs": len(mine), "stopped": result.stopped,
            "order": "".join("A" if w["variant"] == "vanilla" else "B" for w in result.windows),
            "sample": sample, "requests": len(requests),
            "scaled": bool(sample and sample < len(requests)),
            "note": "energy = mean of the paired windows (warm, interleaved with vanilla); accuracy from one pass"})
        row.pop("repeats", None)
        # The task's row is written last: it is what marks the task finished for a resumed run, so a run
        # killed before it measures the task again (its windows and ratio replaced), never keeps a row
        # without the windows and ratio it was computed from.
        self.store.save_energy_windows(self.run_id, task, result.windows)
        if ci is not None:
            self.store.save_metric(self.run_id, "pruned", f"paired_energy_ratio:{task}", ci.ratio,
                                   {"low": ci.low, "high": ci.high, "n": ci.n, "method": "t-interval of the mean "
                                    "log-ratio over pairs", "stopped": result.stopped, "design": self.design})
        self.store.save_task_result(self.run_id, "pruned", task, row)
        if ci is not None:
            band = f" [{ci.low:.3f}, {ci.high:.3f}]" if ci.low is not None else " (n=1: no interval)"
            self.sink.log(f"{task}: paired energy ratio {ci.ratio:.3f}{band}, {ci.n} pairs, {result.stopped}")

    def perplexity(self, model, tokenizer, variant: str, target_run: int, stage: str,
                   metric: str = "ppl_wikitext2", label: str | None = None) -> None:
        """WikiText-2 perplexity (``cfg.ppl_limit`` tokens) saved as ``metric`` of ``target_run``."""
        from backend.stages.perplexity import perplexity

        self.sink.emit("progress", stage=stage, fraction=1.0, message="WikiText-2 perplexity")
        ppl = perplexity(model, tokenizer, max_tokens=self.cfg.ppl_limit)
        self.store.save_metric(target_run, variant, metric, ppl.get("ppl"), ppl)
        self.sink.log(f"{label or variant} WikiText-2 perplexity {ppl.get('ppl'):.2f} on {ppl.get('tokens')} tokens")
