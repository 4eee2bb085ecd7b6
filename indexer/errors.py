"""Typed errors. The core raises these; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base class of every error a user can cause or fix. ``str(err)`` is one line: what and what to do."""


class StoreError(ArchiveError):
    """The store folder is missing, unreadable, damaged, or of another schema."""


class StoreNotFound(StoreError):
    """No archive exists at the given store folder."""


class StoreLocked(StoreError):
    """Another process is writing to the store."""


class ModelMismatch(StoreError):
    """The store was built with another model or weights than the ones asked for."""


class ModelLoadError(ArchiveError):
    """The open_clip model or its weights could not be loaded."""


class VideoOpenError(ArchiveError):
    """A video file could not be opened or holds no decodable video stream."""


class QueryError(ArchiveError):
    """A search or SQL query is malformed (empty text, missing image, bad SQL, a write)."""
