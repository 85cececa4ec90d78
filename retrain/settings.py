"""Configuration sections of retraining (`models.<name>.retrain.gates`, `.push`).

Pydantic only, imported by monitor.config into RetrainConfig; it imports nothing from
monitor.config so there is no import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatesConfig(_Strict):
    """A candidate is promoted only if it is at least as good as production on the same holdout."""

    max_auc_drop: float = Field(default=0.005, ge=0, description="candidate AUC >= production AUC - this")
    max_log_loss_increase: float = Field(
        default=0.005, ge=0, description="candidate log loss <= production log loss x (1 + this)")
    max_calibration_error: float = Field(
        default=0.1, ge=0, description="|calibration ratio - 1| must stay under this, or under production's")
    min_auc: float = Field(default=0.5, ge=0, le=1, description="absolute floor, also when nothing is in production")
    protected_segments: list[str] = Field(
        default=[], description="'column' (every value) or 'column=value'; worse there means not promoted")
    segment_max_auc_drop: float = Field(default=0.02, ge=0)
    segment_max_log_loss_increase: float = Field(default=0.02, ge=0, description="relative, as overall")
    min_segment_rows: int = Field(default=1000, ge=1, description="smaller segment values are not gated")
    calibration_noise_z: float = Field(
        default=2.0, ge=0, description="calibration tolerance is at least this / sqrt(positives) (sparse heads)")

    @field_validator("protected_segments")
    @classmethod
    def _segments(cls, items: list[str]) -> list[str]:
        for item in items:
            column, _, _ = item.partition("=")
            if not column.strip():
                raise ValueError(f"protected segment {item!r}: expected 'column' or 'column=value'")
        return items


class PushConfig(_Strict):
    """Where a promoted version goes besides the registry's production pointer."""

    directory: str | None = Field(default=None,
                                  description="copy to <directory>/<model>/<version>/ (TF-Serving layout)")
    url: str | None = Field(default=None, description="POST a JSON notification here (http or https)")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        return url


def check_cron(expression: str | None) -> str | None:
    """Validate a 5-field crontab expression (minute hour day month weekday)."""
    if expression is None:
        return None
    if len(expression.split()) != 5:
        raise ValueError(f"expected a 5-field cron expression such as '0 3 * * 1', got {expression!r}")
    from apscheduler.triggers.cron import CronTrigger

    CronTrigger.from_crontab(expression, timezone="UTC")
    return expression
