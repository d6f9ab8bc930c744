"""Evaluate an in-memory model on the study's tasks with lm-eval, one task at a time, each metered.

One ``HFLM`` wraps the model once; each task is its own ``simple_evaluate`` call inside its own
:class:`backend.measure.energy.TaskEnergyMeter`, so every task gets its own seconds, tokens and kWh, and a
run killed half way keeps the tasks that finished. lm-eval's results JSON of each task is written to
``out_dir/lm_eval/<task>.json``.

Where the documents come from:
- ``data_dir`` given: local ``<task>.jsonl`` files through generated YAMLs that include lm-eval's
  own task YAMLs (``backend.schema.tasks``), so prompts and metrics are lm-eval's;
- no ``data_dir`` and the hub reachable: lm-eval's built-in tasks by name;
- no ``data_dir`` and no hub: the 50-item sample shipped in the package (``bundled_data_dir()``).

Tokens processed are counted at lm-eval's ``_loglikelihood_tokens``: the input tokens of each
forward pass it will run (requests sharing a context and all-but-last continuation token share one
forward, as lm-eval's logits cache does), excluding padding.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.compat import cheap_lm_eval_env_info
from backend.errors import GreentuiError
from backend.measure.machine import device_name as machine_device_name
from backend.measure.machine import library_versions
from backend.schema.tasks import LOCAL_PREFIX, TASKS, bundled_data_dir, resolve_tasks
from backend.stages.lm_tasks import build_local_task_dir, builtin_task_dirs

Progress = Callable[[str, float], None]
CPU_BATCH_SIZE = 8
DEFAULT_SEED = 1234


# ------------------------------------------------------------------------------ argument checks

def check_limit(limit: object) -> int | None:
    """``--limit`` as given (a whole float such as 5.0 is accepted): ``object``, because this is the
    check that turns an unchecked value into an ``int | None``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        else:
            raise GreentuiError(f"--limit must be a whole number of items per task, got {limit!r}")
    if limit < 1:
        raise GreentuiError(f"--limit must be at least 1 (items per task), got {limit}; "
                            "omit it to evaluate every item")
    return limit


def check_repeats(repeats: int) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise GreentuiError(f"--repeats must be a whole number >= 1, got {repeats!r}")
    return repeats


def resolve_batch_size(batch_size: int | str | None, device: str) -> int | str:
    """An int, or "auto" (lm-eval's detection) on GPU; "auto" means 8 on CPU."""
    if batch_size is None:
        batch_size = "auto"
    if isinstance(batch_size, str):
        text = batch_size.strip().lower()
        if text == "auto" or text.startswith("auto:"):
            return text if _is_gpu(device) else CPU_BATCH_SIZE
        if not text.isdigit():
            raise GreentuiError(f"--batch-size must be a positive number or 'auto', got {batch_size!r}")
        batch_size = int(text)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GreentuiError(f"--batch-size must be a positive number or 'auto', got {batch_size!r}")
    return batch_size


def _is_gpu(device: str) -> bool:
    return str(device).startswith(("cuda", "mps", "xpu", "npu"))


# ----------------------------------------------------------------------------- lm-eval plumbing

class _CountingHooks:
    """What greentui adds to lm-eval's ``HFLM`` (mixed into a subclass: lm-eval's extension point, issue #19
    item 7): tokens and forward rows counted, progress within a task, and the task's loglikelihood
    requests kept (``last_requests``) so that the paired energy windows replay the very same requests on
    both models (``backend.stages.paired``)."""

    def _greentui_init(self) -> None:
        self.tokens = 0
        self.requests = 0
        self.forwards = 0          # forwards lm-eval plans (one per context group)
        self.rows_done = 0         # rows seen by _model_call (auto batch-size probes excluded)
        self.padded_tokens = 0
        self.on_fraction: Callable[[float], None] | None = None
        self.last_requests: list[Any] = []
        self._in_ll = False

    def reset(self) -> None:
        self.tokens = self.requests = self.forwards = self.rows_done = self.padded_tokens = 0

    def loglikelihood(self, requests, *args, **kwargs):
        self.last_requests = list(requests)
        return super().loglikelihood(requests, *args, **kwargs)

    def _loglikelihood_tokens(self, requests, *args, **kwargs):
        max_len = self.max_length
        grouped = getattr(self, "backend", "causal") == "causal" and getattr(self, "logits_cache", True)
        seen: set[tuple[int, ...]] = set()
        forwards = 0
        for _, ctx, cont in requests:
            key = tuple(ctx + cont[:-1])
            if grouped:
                if key in seen:
                    continue
                seen.add(key)
            forwards += 1
            self.tokens += min(len(key), max_len)
        self.requests += len(requests)
        self.forwards += forwards
        self._in_ll = True
        try:
            return super()._loglikelihood_tokens(requests, *args, **kwargs)
        finally:
            self._in_ll = False

    def _model_call(self, inps, *args, **kwargs):
        out = super()._model_call(inps, *args, **kwargs)
        if self._in_ll and self.forwards:
            self.rows_done += int(inps.shape[0])
            self.padded_tokens += int(inps.numel())
            if self.on_fraction is not None:
                self.on_fraction(min(self.rows_done / self.forwards, 1.0))
        return out


_LM_CLASS: list[type] = []


def counting_lm(model, tokenizer, batch_size: int | str, device: str):
    """An ``HFLM`` subclass instance wrapping the in-memory ``model`` that counts its work (see
    :class:`_CountingHooks`). The class is made on first use: importing lm-eval costs seconds."""
    if not _LM_CLASS:
        from lm_eval.models.huggingface import HFLM

        class GreentuiHFLM(_CountingHooks, HFLM):
            """lm-eval's HFLM with greentui's counting, progress and request capture."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._greentui_init()
                super().__init__(*args, **kwargs)

        _LM_CLASS.append(GreentuiHFLM)
    return _LM_CLASS[0](pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
                        max_batch_size=64)


def _metric(values: dict[str, Any], key: str) -> float | None:
    v = values.get(f"{key},none")
    if v is None or isinstance(v, str):  # lm-eval writes "N/A" when a stderr cannot be computed
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _model_device(model) -> str | None:
    try:
        return str(next(model.parameters()).device)
    except (StopIteration, AttributeError):
        return None


# --------------------------------------------------------------------------------------- public

def evaluate_model(model, tokenizer, tasks, *, data_dir: str | Path | None = None,
                   limit: int | None = None, num_fewshot: int = 0, batch_size: int | str = 8,
                   device: str = "cpu", out_dir: str | Path, measure_energy: bool = True,
                   country: str = "USA", progress: Progress | None = None, seed: int = DEFAULT_SEED,
                   tracking_mode: str = "process", measure_power_secs: float = 1.0, repeats: int = 1,
                   cooldown: bool = False, session: Any = None,
                   on_requests: Callable[[str, list[Any]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Evaluate ``model`` task by task; return an iterator yielding one dict per finished task.

    Each dict has "task" (lm-eval's built-in name) and every key of
    ``backend.store.TASK_RESULT_FIELDS``. Argument and data errors raise GreentuiError from this
    call itself, before any evaluation starts (the tasks run as the iterator is consumed).
    ``batch_size="auto"`` is lm-eval's detection on a GPU and 8 on CPU. ``seed`` feeds lm-eval's
    seeds (few-shot sampling included). ``tracking_mode`` is CodeCarbon's (see backend.measure.energy).

    ``repeats``: accuracy is computed on the first pass (it is deterministic); each task's time and
    energy are measured ``repeats`` times on the same requests, every pass in its own window. The
    row's seconds and energy are the means; ``row["repeats"]`` holds each pass. ``cooldown`` waits
    between windows for the GPU to return within 2 °C of its pre-run temperature (at most 60 s).
    ``session``: a :class:`backend.measure.energy.EnergySession` to share (one tracker per run); made here
    when not given. ``on_requests(task, requests)``: called with each task's loglikelihood requests (lm-eval
    ``Instance`` objects) before its row is yielded — what the paired energy windows replay.
    """
    repeats = check_repeats(repeats)
    from backend.workspace import configure_hf_environment, hub_reachable

    names = resolve_tasks(tasks)
    limit = check_limit(limit)
    if isinstance(num_fewshot, bool) or not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise GreentuiError(f"--num-fewshot must be a whole number >= 0, got {num_fewshot!r}")
    bs = resolve_batch_size(batch_size, device)
    out = Path(out_dir)
    json_dir = out / "lm_eval"
    try:
        json_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GreentuiError(f"cannot create {json_dir}: {exc.strerror or exc}") from exc
    if measure_energy:
        from backend.measure.energy import check_country
        check_country(country)  # validate before any work

    configure_hf_environment(None)
    source: dict[str, Any]
    if data_dir is None and not hub_reachable():
        data_dir = bundled_data_dir()
        source = {"kind": "bundled-sample", "data_dir": str(data_dir),
                  "note": "hub unreachable: the 50-item sample shipped with greentui"}
    elif data_dir is not None:
        source = {"kind": "local", "data_dir": str(Path(data_dir).expanduser().resolve())}
    else:
        source = {"kind": "builtin", "note": "lm-eval built-in task, dataset from the HF hub"}

    if data_dir is not None:
        task_dir = build_local_task_dir(data_dir, names, out)   # validates every file first
        include_path: list[str] = [str(task_dir)]
        lm_names = {n: TASKS[n].local_name for n in names}
    else:
        include_path = [str(d) for d in builtin_task_dirs(names)]
        lm_names = {n: n for n in names}

    return _run(model, tokenizer, names, lm_names=lm_names, include_path=include_path, source=source,
                data_dir=data_dir, limit=limit, num_fewshot=num_fewshot, bs=bs, device=device,
                json_dir=json_dir, measure_energy=measure_energy, country=country, progress=progress,
                seed=seed, tracking_mode=tracking_mode, measure_power_secs=measure_power_secs,
                repeats=repeats, cooldown=cooldown, session=session, on_requests=on_requests)


ENERGY_FIELDS = ("energy_cpu_kwh", "energy_gpu_kwh", "energy_ram_kwh", "energy_kwh", "nvml_joules")


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean when every pass has the figure; a half-measured mean would mix meters."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def _run(model, tokenizer, names, *, lm_names, include_path, source, data_dir, limit, num_fewshot, bs,
         device, json_dir, measure_energy, country, progress, seed, tracking_mode,
         measure_power_secs, repeats, cooldown, session, on_requests) -> Iterator[dict[str, Any]]:
    def report(message: str, fraction: float) -> None:
        if progress is not None:
            try:
                progress(message, max(0.0, min(1.0, fraction)))
            except Exception:  # noqa: BLE001 - a UI callback must not break the evaluation
                logging.getLogger(__name__).debug("progress callback failed", exc_info=True)

    report(f"loading lm-eval ({len(names)} task{'s' if len(names) > 1 else ''})", 0.0)
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    current = _model_device(model)
    if device and current is not None and current.split(":")[0] != str(device).split(":")[0]:
        model.to(device)  # the caller's model object moves: lm-eval ignores `device` for objects
    lm = counting_lm(model, tokenizer, bs, device)
    counter = lm
    task_manager = TaskManager(include_path=include_path, include_defaults=False)
    versions = library_versions()
    device_name = machine_device_name(device)
    if measure_energy and session is None:
        from backend.measure.energy import EnergySession
        session = EnergySession(country=country, tracking_mode=tracking_mode,
                                measure_power_secs=measure_power_secs)
    if session is not None:
        session.prepare()  # hardware detection once, before any window
    with cheap_lm_eval_env_info() as warm:  # pay lm-eval's environment collection once, outside any window
        warm()

    for i, name in enumerate(names):
        n_tasks = len(names)
        report(f"{name}: evaluating ({i + 1}/{n_tasks})", i / n_tasks)
        counter.reset()
        last = [0.0]

        def within(frac: float, _i=i, _name=name) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or frac >= 1.0:
                last[0] = now
                report(f"{_name}: {frac:.0%} of forwards ({_i + 1}/{n_tasks})", (_i + frac) / n_tasks)

        counter.on_fraction = within
        passes: list[dict[str, Any]] = []
        res: dict[str, Any] | None = None  # the first pass's lm-eval results: the ones reported
        for rep in range(repeats):
            if rep:
                report(f"{name}: repeat {rep + 1}/{repeats} (time and energy)", i / n_tasks)
                counter.on_fraction = None
            gate = session.cooldown() if (cooldown and session is not None) else None
            meter = session.task(f"greentui-{name}-{rep + 1}") if (measure_energy and session) else None
            counter.reset()
            with cheap_lm_eval_env_info(), (meter if meter is not None else _nullcontext()):
                t0 = time.perf_counter()
                out = lm_eval.simple_evaluate(
                    model=lm, tasks=[lm_names[name]], task_manager=task_manager, num_fewshot=num_fewshot,
                    limit=limit, log_samples=False, bootstrap_iters=1000,
                    random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                    fewshot_random_seed=seed,
                )
                elapsed = time.perf_counter() - t0
            if out is None:
                raise RuntimeError(f"lm-eval returned no results for {name}")
            energy_pass = meter.result if meter is not None else None
            one: dict[str, Any] = {"repeat": rep + 1, "seconds": elapsed, "tokens": counter.tokens}
            for key in ENERGY_FIELDS + ("meter",):
                one[key] = energy_pass[key] if energy_pass else None
            if energy_pass:
                one["provenance"] = energy_pass["provenance"]
            if gate is not None:
                one["cooldown"] = gate
            if res is None:  # the first pass
                res = out
                first_energy = energy_pass
                if on_requests is not None:
                    on_requests(name, list(lm.last_requests))
            else:
                same = out["results"][lm_names[name]].get("acc,none") == res["results"][lm_names[name]].get("acc,none")
                one["acc_identical"] = bool(same)
            passes.append(one)
        if res is None:
            raise GreentuiError(f"{name}: no evaluation pass ran (--repeats {repeats!r})")
        seconds = sum(p["seconds"] for p in passes) / len(passes)
        energy = dict(first_energy) if first_energy is not None else None
        if energy is not None:
            for key in ENERGY_FIELDS:
                energy[key] = _mean_or_none([p[key] for p in passes])
        counter.on_fraction = None
        lm_name = lm_names[name]
        values = res["results"][lm_name]
        n_info = (res.get("n-samples") or {}).get(lm_name, {})
        n_samples = int(n_info.get("effective", values.get("sample_len", 0)) or 0)
        res["greentui"] = {"task": name, "lm_eval_task": lm_name, "source": source,
                           "tokens": counter.tokens, "seconds": seconds}
        try:
            (json_dir / f"{name}.json").write_text(
                json.dumps(res, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n",
                encoding="utf-8")
        except OSError as exc:
            raise GreentuiError(f"cannot write {json_dir / f'{name}.json'}: {exc.strerror or exc}") from exc

        spec = TASKS[name]
        provenance: dict[str, Any] = {
            "device_name": device_name, "versions": versions, "seed": seed,
            "lm_eval_task": lm_name, "lm_eval_task_version": (res.get("versions") or {}).get(lm_name),
            "data": dict(source, file=str(Path(data_dir) / spec.file_name) if data_dir is not None else None,
                         original_split=spec.split, items=n_info.get("original")),
            "batch_size": bs, "tokens_method": "unpadded input tokens per forward (lm-eval context groups)",
            "requests": counter.requests, "forwards": counter.forwards,
            "padded_tokens": counter.padded_tokens,
            "lm_eval_json": str(json_dir / f"{name}.json"), "repeats": repeats,
        }
        if data_dir is not None and num_fewshot:
            provenance["fewshot_source"] = "same file, the evaluated item excluded (no training split offline)"
        if energy is not None:
            provenance["energy"] = energy["provenance"]
            provenance["energy_is_estimate"] = energy["is_estimate"]
        else:
            provenance["energy"] = {"missing": "energy measurement turned off"}
        row = {
            "task": name,
            "acc": _metric(values, "acc"),
            "acc_stderr": _metric(values, "acc_stderr"),
            "acc_norm": _metric(values, "acc_norm") if spec.has_acc_norm else None,
            "acc_norm_stderr": _metric(values, "acc_norm_stderr") if spec.has_acc_norm else None,
            "n_samples": n_samples,
            "seconds": seconds,
            "tokens": counter.tokens,
            "energy_cpu_kwh": energy["energy_cpu_kwh"] if energy else None,
            "energy_gpu_kwh": energy["energy_gpu_kwh"] if energy else None,
            "energy_ram_kwh": energy["energy_ram_kwh"] if energy else None,
            "energy_kwh": energy["energy_kwh"] if energy else None,
            "nvml_joules": energy["nvml_joules"] if energy else None,
            "meter": energy["meter"] if energy else None,
            "cpu_mode": energy["cpu_mode"] if energy else None,
            "device": str(device),
            "num_fewshot": num_fewshot,
            "limit_n": limit,
            "provenance": provenance,
            "repeats": passes,
        }
        report(f"{name}: done, acc={row['acc']:.3f} in {seconds:.1f} s ({i + 1}/{n_tasks})"
               if row["acc"] is not None else f"{name}: done ({i + 1}/{n_tasks})", (i + 1) / n_tasks)
        yield row


@contextmanager
def _nullcontext():
    yield None


__all__ = ["counting_lm", "evaluate_model", "check_limit", "resolve_batch_size", "LOCAL_PREFIX"]
