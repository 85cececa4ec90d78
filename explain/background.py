"""The background sample deep SHAP explains against, drawn once and kept in the results store.

Expected gradients and DeepLIFT attribute each row relative to a background distribution:
the base value is the model's mean logit over it, and every attribution is a difference
from it. Two windows' attributions are comparable only when they were measured against
the same background, so it is drawn once - a bounded uniform sample of the baseline data
with the configured seed - and stored beside the cached baseline attribution, under the
same key (model, settings and data fingerprint). Every later run, and the service after a
restart, loads it instead of drawing again; a new model, setting or baseline file changes
the key, and so draws a new one.

Rows are stored as Arrow IPC (base64 inside the store's JSON), so column types come back
exactly as read: a categorical read as integers stays integers, nulls stay nulls.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

ROLE = "attribution_background"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # stored once per key, not per window


@dataclass(frozen=True)
class Background:
    frame: object  # pandas.DataFrame of the model's feature columns
    digest: str  # sha256 of the stored rows: equal digests mean the same background
    loaded: bool  # True: read back from the store; False: drawn (and stored) by this run

    def summary(self, source: str) -> dict:
        return {"rows": len(self.frame), "digest": self.digest, "source": source, "loaded": self.loaded}


def draw(frame, rows: int, seed: int):
    """A uniform sample of `rows` rows without replacement (all of them when fewer)."""
    from explain.tree import sample_frame

    return sample_frame(frame, rows, seed).reset_index(drop=True)


def _encode(frame) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _decode(data: bytes):
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()


def save(store, model: str, key: str, frame) -> Background:
    data = _encode(frame)
    digest = hashlib.sha256(data).hexdigest()
    store.save_profile(model, ROLE, _EPOCH, _EPOCH, key, {
        "rows": len(frame), "columns": list(map(str, frame.columns)), "digest": digest,
        "arrow_ipc": base64.b64encode(data).decode("ascii")})
    return Background(_decode(data), digest, loaded=False)


def load(store, model: str, key: str) -> Background | None:
    stored = store.load_profile(model, ROLE, _EPOCH, _EPOCH, key)
    if stored is None:
        return None
    return Background(_decode(base64.b64decode(stored["arrow_ipc"])), stored["digest"], loaded=True)
