"""A window's label profile: computed by the model's engine, and with a profile_granularity
stored per slice and merged, as feature profiles are (monitor.runner.ModelRunner.window_profile).

Slices are stored under role "labels" and the label spec's key; a slice is only computed
for a window a label check runs on, i.e. once its labels have matured, so a stored slice
holds mature labels. Unreadable files met while computing a slice are kept with it, so a
window merged from stored slices is still marked partial.
"""

from __future__ import annotations

from datetime import datetime

from core.label_profile import LabelProfile, LabelSpec, check_columns, empty_label_profile

ROLE = "labels"


def window_label_profile(runner, spec: LabelSpec, start: datetime, end: datetime) -> tuple[LabelProfile, tuple]:
    """(the label profile of [start, end), the window's unreadable files as 'path: why')."""
    source = runner.engine_source("serving")
    where = f"{source.location} (window)"
    check_columns(source.schema, spec, where)  # a missing or retyped column: one line naming it
    step = runner.model.profile_granularity
    if step is None:
        profile = runner.engine.label_profile(source, spec, start, end, where)
        bad = list(source.report.bad_files)
    else:
        key, profile, bad, cursor = spec.key(), empty_label_profile(spec), [], start
        store, model = runner.store, runner.model.name
        while cursor < end:
            upper = min(cursor + step, end)
            stored = store.load_profile(model, ROLE, cursor, upper, key)
            if stored is None:
                before = len(source.report.bad_files)
                piece = runner.engine.label_profile(source, spec, cursor, upper, where)
                new = [list(b) for b in source.report.bad_files[before:]]
                store.save_profile(model, ROLE, cursor, upper, key, {**piece.to_dict(), "bad_files": new}, bool(new))
            else:
                new = stored.pop("bad_files", [])
                piece = LabelProfile.from_dict(stored)
            bad.extend(tuple(b) for b in new)
            profile = profile.merge(piece)
            cursor = upper
    return profile.validate(where), tuple(dict.fromkeys(f"{path}: {why}" for path, why in bad))
