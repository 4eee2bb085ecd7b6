"""Typed errors. The core raises these; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base class of every error a user can cause or fix. ``str(err)`` is one line: what and what to do.

    ``exit_code`` is the CLI's exit status for it: 1, or 2 for a usage error.
    """

    exit_code = 1


class UsageError(ArchiveError):
    """An option or argument has a value the command cannot take (``--fps 0``, ``--top 0``)."""

    exit_code = 2


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


class NothingToSearch(QueryError):
    """A search was given neither a text nor an example image (a usage error)."""

    exit_code = 2
