"""A searchable video archive on CLIP embeddings. Start with :class:`archive.Archive`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Archive"]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .api import Archive


def __getattr__(name: str) -> Any:  # lazy, so `archive --help` stays instant
    if name == "Archive":
        from .api import Archive  # lazy: `archive --help` imports this package, not the core

        return Archive
    raise AttributeError(name)
