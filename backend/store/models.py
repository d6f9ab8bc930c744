"""Models: one row per model reference (HF id or path) with its shape.

A repository of :class:`backend.store.Store`: it shares the store's one connection and its
transactions; reach it as ``store.models``.
"""

from __future__ import annotations

import json
from typing import Any

from backend.errors import GreentuiError
from backend.store.base import Repository, inserted_id
from backend.store.tables import (
    _fits,
    now,
)
from backend.text import NAME_LIMIT, safe_text


class ModelRepository(Repository):
    """Models: one row per model reference (HF id or path) with its shape."""

    MODEL_FIELDS = ("name", "source", "arch", "params", "layers", "heads", "kv_heads", "hidden",
                    "intermediate", "dtype", "size_bytes", "trust_remote_code")

    def upsert(self, ref: str, **info: Any) -> int:
        """Add or refresh a model by its reference (HF id or absolute path); return its id."""
        fields = {k: info.pop(k) for k in list(info) if k in self.MODEL_FIELDS}
        fields["trust_remote_code"] = int(bool(fields.get("trust_remote_code", 0)))
        extra = json.dumps(info, default=str) if info else None
        with self.transaction() as c:
            row = c.execute("SELECT id FROM models WHERE ref = ?", (ref,)).fetchone()
            if row:
                sets = ", ".join(f"{k} = ?" for k in fields)
                c.execute(f"UPDATE models SET {sets}, info = COALESCE(?, info) WHERE id = ?",
                          (*fields.values(), extra, row[0]))
                return int(row[0])
            cols = ", ".join(["ref", *fields, "info", "added_at"])
            marks = ", ".join("?" * (len(fields) + 3))
            cur = c.execute(f"INSERT INTO models ({cols}) VALUES ({marks})",
                            (ref, *fields.values(), extra, now()))
            return inserted_id(cur)

    def get(self, ref_or_id: str | int) -> dict[str, Any] | None:
        if (isinstance(ref_or_id, int) or str(ref_or_id).isdigit()) and _fits(int(ref_or_id)):
            row = self._row("SELECT * FROM models WHERE id = ?", (int(ref_or_id),))
            if row:
                return row
        return self._row("SELECT * FROM models WHERE ref = ? OR name = ? ORDER BY id LIMIT 1",
                         (str(ref_or_id), str(ref_or_id)))

    def require(self, ref_or_id: str | int) -> dict[str, Any]:
        """The model's row; a missing one (a model just added is never missing) is one clear error."""
        row = self.get(ref_or_id)
        if row is None:
            raise GreentuiError(f"no model {safe_text(str(ref_or_id), NAME_LIMIT)!r} in {self.path}")
        return row

    def list(self) -> list[dict[str, Any]]:
        return self._rows("SELECT m.*, (SELECT COUNT(*) FROM runs r WHERE r.model_id = m.id) AS runs "
                          "FROM models m ORDER BY m.id")

    def remove(self, model_id: int) -> None:
        """Remove a model that no run refers to; runs are history and are never dropped implicitly."""
        with self.transaction() as c:
            n = c.execute("SELECT COUNT(*) FROM runs WHERE model_id = ?", (model_id,)).fetchone()[0]
            if n:
                raise GreentuiError(f"model {model_id} has {n} run(s); delete them first (greentui rm RUN)")
            if c.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount == 0:
                raise GreentuiError(f"no model with id {model_id}")
