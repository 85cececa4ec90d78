"""A window's label profile: computed by the model's engine, and with a profile_granularity
stored per slice and merged, as feature profiles are (monitor.runner.ModelRunner.merged_slices).

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
    if runner.model.profile_granularity is None:
        profile = runner.engine.label_profile(source, spec, start, end, where)
    else:
        profile = runner.merged_slices(ROLE, spec.key(), start, end, source, empty_label_profile(spec),
                                       LabelProfile.from_dict,
                                       lambda lo, hi: runner.engine.label_profile(source, spec, lo, hi, where))
    bad = dict.fromkeys(f"{path}: {why}" for path, why in source.report.bad_files)
    return profile.validate(where), tuple(bad)
