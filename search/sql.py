"""Read-only SQL over the catalog, for ``archive sql`` and notebooks.

Besides the tables (``videos``, ``frames``, ``failures``, ``meta``) the SQL can call
``clip_score(frame_id, 'text')``: the cosine score of a frame against a text (through the same
prompt templates), the same number ``archive search`` reports as ``score``. Vectors come from the vector segments; the text model is loaded only when a
statement uses the function.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from indexer.errors import QueryError
from indexer.model.encoder import Encoder
from indexer.store import Reader

from .presence import ensemble

# Statement types that only read. Everything else (INSERT, DROP, ATTACH, COPY, SET, ...) is refused.
_READ_TYPES = {"SELECT", "EXPLAIN"}
_USES_CLIP = re.compile(r"\bclip_score\s*\(", re.IGNORECASE)


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


class _ClipScore:
    """The vectorised ``clip_score(frame_id BIGINT, text VARCHAR) -> DOUBLE`` UDF."""

    def __init__(self, store_dir: str | os.PathLike[str], encoder: Callable[[], Encoder]) -> None:
        table = Reader.of(store_dir).frames()
        self._vectors = table.vectors
        self._keep = table  # owns the memory behind self._vectors
        top = int(table.frame_id.max()) + 1 if len(table) else 0
        self._row = np.full(top, -1, np.int64)
        self._row[table.frame_id] = table.row
        self._encoder = encoder
        self._texts: dict[str, np.ndarray] = {}

    def __call__(self, frame_ids: Any, texts: Any) -> Any:
        import pyarrow as pa  # lazy: heavy import

        ids = frame_ids.to_numpy(zero_copy_only=False)
        txt = texts.to_pylist()
        out = np.full(len(ids), np.nan)
        valid = (
            np.array([i is not None and 0 <= i < len(self._row) for i in ids], bool)
            if ids.dtype == object
            else (ids >= 0) & (ids < len(self._row))
        )
        rows = np.full(len(ids), -1, np.int64)
        rows[valid] = self._row[ids[valid].astype(np.int64)]
        for text in set(t for t in txt if t is not None):
            q = self._text_vector(text)
            sel = np.flatnonzero((np.array(txt, dtype=object) == text) & (rows >= 0))
            if len(sel):
                out[sel] = self._vectors[rows[sel]] @ q
        return pa.array(out, mask=np.isnan(out))

    def _text_vector(self, text: str) -> np.ndarray:
        if text not in self._texts:
            self._texts[text] = ensemble([[text]], self._encoder().encode_texts)[0]
        return self._texts[text]


def run_sql(store_dir: str | os.PathLike[str], sql: str, encoder: Callable[[], Encoder] | None = None) -> SqlResult:
    """Run one read-only statement on the catalog (tables ``videos``, ``frames``, ``failures``, ``meta``;
    function ``clip_score(frame_id, text)``).

    The catalog is opened read-only with external access off, so no statement can change the
    archive or write files.

    Args:
        store_dir: the store folder.
        sql: one SELECT (or WITH ... SELECT, EXPLAIN) statement.
        encoder: returns the store's encoder; called only if the SQL uses ``clip_score``.

    Raises:
        QueryError: empty, unparsable, several statements, or a statement that writes.
        StoreNotFound: no archive there.
    """
    import duckdb  # lazy: `archive --help` and `--version` open no catalog

    if not sql or not sql.strip():
        raise QueryError('empty SQL: give a SELECT statement, e.g. archive sql "SELECT * FROM videos".')
    with Reader.of(store_dir).connection() as con:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"SQL does not parse: {_line(exc)}") from exc
        if len(statements) != 1:
            raise QueryError(f"give one SQL statement at a time, not {len(statements)}.")
        kind = statements[0].type.name
        if kind not in _READ_TYPES:
            raise QueryError(f"only reading SQL is allowed here (SELECT, WITH ..., EXPLAIN); this is {kind}.")
        if encoder is not None and _USES_CLIP.search(sql):
            con.create_function(
                "clip_score",
                _ClipScore(store_dir, encoder),
                ["BIGINT", "VARCHAR"],
                "DOUBLE",
                type="arrow",
                side_effects=False,
            )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall()
        except duckdb.Error as exc:
            raise QueryError(f"SQL error: {_line(exc)}") from exc
    return SqlResult(cols, rows)


def _line(exc: BaseException) -> str:
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return " ".join(text[:2])[:300] if text else type(exc).__name__
