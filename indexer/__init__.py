"""The write path: find videos, decode frames by timestamp, embed them, commit them to the store.

The store (:mod:`indexer.store`) and the encoder (:mod:`indexer.model.encoder`) live here because the
indexer builds them; the read path in :mod:`search` uses their read-side API.
"""
