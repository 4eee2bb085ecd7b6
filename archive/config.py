"""Defaults from the environment: where the store is, which model to use."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = "data"


def store_dir(store: str | os.PathLike[str] | None = None) -> Path:
    """``store`` if given, else ``$ARCHIVE_STORE``, else ``./data``."""
    return Path(store or os.environ.get("ARCHIVE_STORE") or DEFAULT_STORE).expanduser()


def env_model() -> str | None:
    """``$ARCHIVE_MODEL`` (None: the store's model, or ViT-B-32 for a new store)."""
    return os.environ.get("ARCHIVE_MODEL") or None


def env_pretrained() -> str | None:
    """``$ARCHIVE_PRETRAINED`` (None: the store's weights, or laion2b_s34b_b79k for a new store)."""
    return os.environ.get("ARCHIVE_PRETRAINED") or None
