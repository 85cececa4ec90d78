"""`driftline retrain`: window -> train -> evaluate against production -> infra-validate ->
gate -> register -> (maybe) promote. TFX's Trainer, Evaluator, InfraValidator and Pusher,
without TensorFlow.

1. Read the labelled rows of the training window (sliding: the last `training_window`
   before END, or an explicit START/END) from the configured sources; rows whose labels
   cannot have arrived yet (label delay) are left out; a uniform sample bounds the size.
2. Split by time: the last `holdout` is the holdout, the latest `validation_fraction` of
   the rest is the validation set (early stopping), the remainder trains.
3. Train the candidate; save it; load and score a sample of serving logs in a fresh
   process (InfraValidator).
4. Score the holdout with the candidate and the production model; metrics overall and per
   segment; gates. Write the version (artifact, metadata, evaluation report).
5. Promote only if it passed and promotion was asked for.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ConfigError, DriftlineError, SchemaError
from core.sources import Source, sample_batches
from retrain.base import Dataset, FeatureSet, ProgressFn, TrainingError, get_trainer, load_model, run_fit
from retrain.evaluate import Gates, evaluate_heads, gate_heads, head_name
from retrain.infra_validate import INFRA_TMP, infra_validate
from retrain.registry import ModelRegistry, Push, owner_token, remove_stale
from retrain.resources import Distributed
from retrain.report import reliability_points, roc_points, write_report

if TYPE_CHECKING:  # annotations only: the application passes its config in; retrain never imports it
    from monitor.config import Config, ModelConfig

FORMAT = 1
SEED = 0
CANDIDATE_TMP = "driftline-candidate-"


@dataclass(frozen=True)
class RetrainResult:
    model: str
    version: int
    trainer: str
    passed: bool
    promoted: bool
    reasons: tuple[str, ...]
    production_before: int | None
    production_after: int | None
    window: dict[str, Any]
    metrics: dict[str, Any]
    production_metrics: dict[str, Any] | None
    infra: dict[str, Any]
    report_html: str
    report_json: str
    training: dict[str, Any] = field(default_factory=dict)
    head_metrics: dict[str, Any] = field(default_factory=dict)  # head -> {candidate, production} overall

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}}


def registry_for(config: Config, model: ModelConfig, root: str | Path | None = None) -> ModelRegistry:
    retrain = model.retrain
    path = Path(root or retrain.registry)
    path = path if path.is_absolute() else (config.base_dir / path).resolve()
    push = retrain.push
    directory = push.directory
    if directory and not Path(directory).is_absolute():
        directory = str((config.base_dir / directory).resolve())
    return ModelRegistry(path, Push(directory, push.url, push.timeout_seconds))


def label_columns(model: ModelConfig) -> list[str]:
    labels = list(model.retrain.labels) or [l.name for l in model.model_schema.labels[:1]]
    if not labels:
        raise ConfigError(f"models.{model.name}.retrain.labels: no label column (and schema.labels is empty)")
    return labels


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"driftline {version('driftline')}"
    except PackageNotFoundError:
        text = "driftline (not installed)"
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        text += f" @ {ref[:12]}"
    except OSError:
        pass
    return text


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def resolve_window(model: ModelConfig, window: tuple[datetime, datetime] | None,
                   now: datetime | None = None, latest: datetime | None = None) -> tuple[datetime, datetime]:
    """An explicit START/END, or the sliding `training_window` ending at the current hour, or at
    the hour after the data's `latest` timestamp when the data ends earlier (logs copied from
    elsewhere, a replayed world: a window relative to now would hold no rows)."""
    if window is not None:
        return _utc(window[0]), _utc(window[1])
    end = _utc(now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    if latest is not None and _utc(latest) < end:
        end = (_utc(latest) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return end - model.retrain.training_window, end


def latest_timestamp(config: Config, model: ModelConfig) -> datetime | None:
    """The newest timestamp in the retraining sources (one pass over the timestamp column)."""
    ts = model.model_schema.timestamp
    newest = None
    for role in model.retrain.sources:
        cfg = getattr(model, role)
        source = Source(cfg.resolved(config.base_dir), cfg.format, ts)
        if ts not in source.schema.names:
            continue
        for batch in source.batches([ts]):
            value = pc.max(pc.cast(batch.column(ts), pa.timestamp("us", tz="UTC"))).as_py()
            if value is not None and (newest is None or value > newest):
                newest = value
    return newest


def read_window(config: Config, model: ModelConfig, columns: list[str], start: datetime, end: datetime,
                max_rows: int | None) -> pd.DataFrame:
    """The window's rows from the configured sources, time-ordered, uniformly sampled to max_rows."""
    ts = model.model_schema.timestamp
    excluded = excluded_windows(model)

    def kept(batches):
        """Leave out rows in excluded windows before sampling, so the sample is of good rows."""
        for batch in batches:
            if excluded:
                times = pc.cast(batch.column(ts), pa.timestamp("us", tz="UTC"))
                drop = None
                for lo, hi in excluded:
                    inside = pc.and_(pc.greater_equal(times, pa.scalar(lo, times.type)),
                                     pc.less(times, pa.scalar(hi, times.type)))
                    drop = inside if drop is None else pc.or_(drop, inside)
                batch = batch.filter(pc.invert(pc.fill_null(drop, False)))
            yield batch

    tables = []
    for role in model.retrain.sources:
        cfg = getattr(model, role)
        source = Source(cfg.resolved(config.base_dir), cfg.format, ts)
        missing = [c for c in columns if c not in source.schema.names]
        if missing:
            raise SchemaError(f"{source.location}: column '{missing[0]}' is missing ({role} source, "
                              f"needed by models.{model.name}.retrain)")
        batches = kept(source.batches(columns, start, end))
        table = (sample_batches(batches, max_rows, SEED, source.schema, columns) if max_rows
                 else pa.Table.from_batches(list(batches), schema=pa.schema([source.schema.field(c) for c in columns])))
        tables.append(table.select(columns))
    table = pa.concat_tables(tables, promote_options="permissive")
    if max_rows and table.num_rows > max_rows:
        table = sample_batches(table.to_batches(), max_rows, SEED + 1, table.schema, columns)
    return time_ordered_frame(table, ts)


def time_ordered_frame(table: pa.Table, ts: str) -> pd.DataFrame:
    """The rows ordered by time (stable, nulls last), sorted in Arrow before the one
    conversion to pandas (no sort at all when already in order, as logs usually are)."""
    times = table.column(ts)
    if not pa.types.is_timestamp(times.type):  # text or numbers: order by the parsed time, in pandas
        frame = table.to_pandas()
        frame[ts] = pd.to_datetime(frame[ts], utc=True)
        return frame.sort_values(ts, kind="mergesort").reset_index(drop=True)
    if table.num_rows > 1:
        times = times.combine_chunks()
        in_order = times.null_count == 0 and pc.all(pc.greater_equal(times[1:], times[:-1])).as_py()
        if not in_order:
            table = table.take(pc.sort_indices(table, sort_keys=[(ts, "ascending", "at_end")]))
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    frame[ts] = pd.to_datetime(frame[ts], utc=True)
    return frame


def excluded_windows(model: ModelConfig) -> list[tuple[datetime, datetime]]:
    from core.sources import parse_window

    windows = []
    for i, text in enumerate(model.retrain.exclude):
        try:
            windows.append(parse_window(text))
        except DriftlineError as exc:
            raise ConfigError(f"models.{model.name}.retrain.exclude.{i}: {exc}") from exc
    return windows


def split(frame: pd.DataFrame, ts: str, end: datetime, model: ModelConfig) -> tuple[pd.DataFrame, ...]:
    """(train, valid, holdout), all by time so nothing from the future leaks into training."""
    retrain = model.retrain
    if retrain.holdout_fraction is not None:
        cut = int(round(len(frame) * (1 - retrain.holdout_fraction)))
    else:
        cut = int(frame[ts].searchsorted(pd.Timestamp(end - retrain.holdout), side="left"))
    rest, holdout = frame.iloc[:cut], frame.iloc[cut:]
    vcut = int(round(len(rest) * (1 - retrain.validation_fraction)))
    return (rest.iloc[:vcut].reset_index(drop=True), rest.iloc[vcut:].reset_index(drop=True),
            holdout.reset_index(drop=True))


def serving_sample(config: Config, model: ModelConfig, features: list[str], start: datetime, end: datetime,
                   rows: int) -> pd.DataFrame | None:
    cfg = model.serving
    source = Source(cfg.resolved(config.base_dir), cfg.format, model.model_schema.timestamp)
    columns = [c for c in features if c in source.schema.names]
    if len(columns) < len(features):
        return None
    table = sample_batches(source.batches(columns, start, end), rows, SEED, source.schema, columns)
    return table.to_pandas() if table.num_rows else None


def trainer_params(configured_trainer: str, configured: dict | None, trainer: str,
                   overrides: dict | None) -> dict:
    """The params a run uses: the configured trainer starts from `retrain.params`, any other
    trainer from its own defaults; `overrides` (`--param`) go on top, key by key."""
    base = dict(configured or {}) if trainer == configured_trainer else {}
    return {**base, **(overrides or {})}


def run_retrain(config: Config, model_name: str | None = None, trainer: str | None = None,
                params: dict | None = None, window: tuple[datetime, datetime] | None = None,
                promote: bool = True, registry_root: str | Path | None = None,
                progress: ProgressFn | None = None, log: Callable[[str], None] | None = None,
                prepare: Callable[[Dataset], Dataset] | None = None, trigger: str = "cli",
                now: datetime | None = None) -> RetrainResult | None:
    """Train a candidate, evaluate it against production, register it, promote it if it passes.
    `prepare` may alter the training and validation sets (the demo damages one on purpose).
    Under torchrun only rank 0 goes on after training; the others return None."""
    log = log or (lambda message: None)
    remove_stale(Path(tempfile.gettempdir()), (CANDIDATE_TMP, INFRA_TMP))  # what killed runs left
    model = config.model(model_name)
    retrain = model.retrain
    name = trainer or retrain.trainer
    key = f"models.{model.name}.retrain"
    try:
        impl = get_trainer(name)
        valid_params = impl.validate_params(trainer_params(retrain.trainer, retrain.params, name, params))
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    labels = label_columns(model)
    if impl.multitask and len(labels) < 2:
        raise ConfigError(f"{key}.labels: trainer {name} needs two labels (click, conversion), got {labels}")
    schema = model.model_schema
    features = FeatureSet(tuple(f.name for f in schema.features if f.kind == "numeric"),
                          tuple(f.name for f in schema.features if f.kind == "categorical"))
    gates = Gates.from_config(retrain.gates)
    segments = list(dict.fromkeys([*schema.segments, *gates.segment_columns()]))
    ts = schema.timestamp

    latest = latest_timestamp(config, model) if window is None else None
    start, end = resolve_window(model, window, now, latest)
    if latest is not None and end <= _utc(now or datetime.now(timezone.utc)) - timedelta(hours=1):
        log(f"the data ends at {latest:%Y-%m-%d %H:%M} UTC, so the sliding training window ends there, not now "
            f"({start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}); --window START/END sets another")
    excluded_windows(model)  # bad entries fail before any reading
    delays = {l.name: l.delay for l in schema.labels}
    labelled_end = min(end, _utc(now or datetime.now(timezone.utc)) - max(delays.get(l, timedelta(0)) for l in labels))
    if labelled_end <= start:
        raise TrainingError(f"window {start:%Y-%m-%dT%H:%M}/{end:%Y-%m-%dT%H:%M}: no labels can have arrived yet "
                            f"(label delay)")
    columns = list(dict.fromkeys([ts, *features.names, *labels, *segments]))
    log(f"reading {', '.join(retrain.sources)} rows {start:%Y-%m-%d %H:%M} – {labelled_end:%Y-%m-%d %H:%M}")
    frame = read_window(config, model, columns, start, labelled_end, retrain.max_rows)
    frame = frame.dropna(subset=labels).reset_index(drop=True)  # impressions whose label was never joined
    if frame.empty:
        raise TrainingError(f"no labelled rows in the window {start:%Y-%m-%dT%H:%M}/{end:%Y-%m-%dT%H:%M} "
                            f"(sources: {', '.join(retrain.sources)})")
    train_df, valid_df, holdout_df = split(frame, ts, labelled_end, model)
    train, valid = Dataset(train_df, features, tuple(labels)), Dataset(valid_df, features, tuple(labels))
    if holdout_df.empty:
        raise TrainingError(f"the holdout ({key}.holdout) is empty: no labelled rows at the end of the window")
    if prepare is not None:
        train, valid = prepare(train), prepare(valid)
    train.check_trainable("training set")

    registry = registry_for(config, model, registry_root)
    production_version = registry.production(model.name)
    production = load_model(registry.path(model.name, production_version)) if production_version else None
    log(f"training {name} on {len(train)} rows (validation {len(valid)}, holdout {len(holdout_df)})")
    candidate = run_fit(impl, train, valid, valid_params, progress=progress, base=production)
    if not Distributed.from_env().main:
        return None  # under torchrun the other processes only helped to train

    with tempfile.TemporaryDirectory(prefix=f"{CANDIDATE_TMP}{owner_token()}-") as tmp:
        artifact = Path(tmp) / "artifact"
        candidate.save(artifact)
        sample = serving_sample(config, model, list(features.names), start, end, retrain.infra_sample_rows)
        if sample is None:
            sample = holdout_df.head(retrain.infra_sample_rows)
        log(f"infra validation: loading the artifact in a fresh process, scoring {len(sample)} serving rows")
        infra = infra_validate(artifact, sample, candidate.on_cpu().predict(sample))

        label = labels[0]
        cand_tasks = candidate.predict_tasks(holdout_df)
        primary = head_name(next(iter(cand_tasks)), labels)
        scores = next(iter(cand_tasks.values()))
        cand_heads = evaluate_heads(holdout_df, labels, cand_tasks, segments, gates.min_segment_rows)
        prod_tasks = production.predict_tasks(holdout_df) if production is not None else None
        prod_heads = (evaluate_heads(holdout_df, labels, prod_tasks, segments, gates.min_segment_rows)
                      if prod_tasks is not None else None)
        prod_scores = next(iter(prod_tasks.values())) if prod_tasks else None
        cand_eval, prod_eval = cand_heads[primary], (prod_heads or {}).get(primary)
        decision = gate_heads(cand_heads, prod_heads, gates)
        reasons = tuple(decision.reasons) + (() if infra.passed else (f"infra validation: {infra.message}",))
        passed = decision.passed and infra.passed
        gates_record = dict(decision.to_dict(), passed=passed, reasons=list(reasons))
        y = holdout_df[label].to_numpy()
        curves = {"roc": {"candidate": roc_points(y, scores)},
                  "reliability": {"candidate": reliability_points(y, scores)}}
        if prod_scores is not None:
            curves["roc"]["production"] = roc_points(y, prod_scores)
            curves["reliability"]["production"] = reliability_points(y, prod_scores)
        window_record = {"start": start.isoformat(), "end": end.isoformat(), "labelled_end": labelled_end.isoformat(),
                         "sources": list(retrain.sources), "excluded": list(retrain.exclude),
                         "train_rows": len(train), "valid_rows": len(valid),
                         "holdout_rows": len(holdout_df), "holdout_start": holdout_df[ts].iloc[0].isoformat()}
        report = {"format": FORMAT, "model": model.name, "trainer": name, "window": window_record,
                  "production_version": production_version, "candidate": cand_eval.to_dict(),
                  "production": prod_eval.to_dict() if prod_eval else None, "gates": gates_record,
                  "infra": infra.to_dict(), "primary_head": primary,
                  "heads": {h: {"candidate": e.to_dict(),
                                "production": prod_heads[h].to_dict() if prod_heads and h in prod_heads else None}
                            for h, e in cand_heads.items()}}
        head_metrics = {h: {"candidate": e.overall.to_dict(),
                            "production": prod_heads[h].overall.to_dict() if prod_heads and h in prod_heads else None}
                        for h, e in cand_heads.items()}
        metadata = {"trainer": name, "params": candidate.params, "labels": labels,
                    "features": features.to_dict(), "data_window": window_record,
                    "metrics": {"candidate": cand_eval.overall.to_dict(),
                                "production": prod_eval.overall.to_dict() if prod_eval else None,
                                "heads": head_metrics},
                    "gates": gates_record, "infra": infra.to_dict(), "parent_version": production_version,
                    "code_version": code_version(), "trigger": trigger,
                    "training": getattr(candidate, "info", {})}

        def write(directory: Path, version: int) -> None:
            shutil.copytree(artifact, directory, dirs_exist_ok=True)
            write_report(directory, dict(report, version=version), curves)

        version = registry.create_version(model.name, write, metadata)
    log(f"registered {model.name} v{version}: " + ("passed the gates" if passed else "rejected: " + "; ".join(reasons)))
    promoted = False
    if passed and promote:
        registry.promote(model.name, version, reason=f"retrain ({trigger}) passed the gates")
        promoted = True
        log(f"promoted {model.name} v{version} to production")
    path = registry.path(model.name, version)
    return RetrainResult(
        model=model.name, version=version, trainer=name, passed=passed, promoted=promoted, reasons=reasons,
        production_before=production_version, production_after=registry.production(model.name),
        window=window_record, metrics=cand_eval.overall.to_dict(),
        production_metrics=prod_eval.overall.to_dict() if prod_eval else None, head_metrics=head_metrics,
        infra=infra.to_dict(),
        report_html=str(path / "evaluation.html"), report_json=str(path / "evaluation.json"),
        training={k: v for k, v in getattr(candidate, "info", {}).items() if k != "history"})


def import_model(registry: ModelRegistry, model_name: str, model, metadata: dict[str, Any] | None = None) -> int:
    """Register a model trained elsewhere (e.g. the one serving today) as a new version."""
    record = {"trainer": model.trainer, "params": model.params, "labels": list(model.labels),
              "features": model.features.to_dict(), "code_version": code_version(), "trigger": "import",
              **(metadata or {})}
    return registry.create_version(model_name, lambda directory, version: model.save(directory), record)
