"""Planning an index run: which model to use, and which files to embed, skip or re-stamp."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from indexer.errors import ModelMismatch
from indexer.model.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, resolve_spec
from indexer.store import KnownFile, Reader, has_catalog
from indexer.store.records import ModelSpec

from .discover import fingerprint


@dataclass
class Plan:
    """The files of a run, split by what is to be done with them."""

    todo: list[str] = field(default_factory=list)  # new, changed, or indexed at another --fps
    same: list[str] = field(default_factory=list)  # unchanged: skipped
    touched: list[tuple[str, float]] = field(default_factory=list)  # unchanged content, new mtime
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, why it cannot be read)


def plan_files(files: Sequence[str], known: dict[str, KnownFile], fps: float, shots: str | None = None) -> Plan:
    """Decide per file: embed it, skip it (same size and mtime, or same content fingerprint, at
    the same ``fps``, and by the shot detector ``shots`` when one is asked for explicitly), or
    report it (unreadable, not a regular file, a name that is not UTF-8)."""
    plan = Plan()
    for f in files:
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(f).decode("utf-8", "backslashreplace")
            plan.bad.append((shown, "the file name is not valid UTF-8: rename the file to index it"))
            continue
        try:
            st = os.stat(f)
        except OSError as exc:
            plan.bad.append((f, f"cannot read ({exc.strerror})"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the decoder forever
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a pipe, socket or device"
            plan.bad.append((f, f"not a regular file ({kind})"))
            continue
        if not os.access(f, os.R_OK):
            plan.bad.append((f, "cannot read (permission denied)"))
            continue
        old = known.get(f)
        if (
            old is None
            or old.sample_fps != fps
            or old.size_bytes != st.st_size
            or (shots is not None and old.shot_detector != shots)
        ):
            plan.todo.append(f)
        elif old.mtime == st.st_mtime:
            plan.same.append(f)
        else:
            try:
                unchanged = fingerprint(f) == old.fingerprint
            except OSError as exc:
                plan.bad.append((f, f"cannot read ({exc.strerror})"))
                continue
            if unchanged:
                plan.same.append(f)
                plan.touched.append((f, st.st_mtime))
            else:
                plan.todo.append(f)
    return plan


def choose_spec(
    store_dir: Path,
    model: str | None,
    pretrained: str | None,
    loaded: ModelSpec | None,
    meta: dict[str, str] | None = None,
) -> ModelSpec:
    """The model for this run: the loaded encoder's, else asked for, else the store's, else the
    defaults; checked against the store (``meta``: its ``meta`` table when the caller has read it).

    Raises:
        ModelMismatch: the store was built with another model or weights.
        ModelLoadError: an unknown model, tag or checkpoint file.
    """
    existing: ModelSpec | None = None
    if meta is None and has_catalog(store_dir):
        meta = Reader(store_dir).meta()
    if meta:
        existing = ModelSpec(meta["model"], meta["pretrained"])
    if loaded is not None:
        spec = loaded
    elif (
        existing is not None
        and model in (None, existing.name)
        and (
            pretrained is None
            or pretrained == existing.pretrained
            or (existing.random_weights and pretrained.strip().lower() in {"none", "random"})
        )
    ):
        return existing  # the store's own model: no need to import open_clip to check it
    else:
        name = model or (existing.name if existing else DEFAULT_MODEL)
        if pretrained is None:
            pretrained = existing.pretrained if existing and existing.name == name else DEFAULT_PRETRAINED
        spec = resolve_spec(name, pretrained)
    if existing is not None and spec != existing:
        raise ModelMismatch(
            f"the store {store_dir} was built with {existing.name} ({existing.pretrained}), not "
            f"{spec.name} ({spec.pretrained}); drop --model/--pretrained to use the store's, or use another --store."
        )
    return spec
