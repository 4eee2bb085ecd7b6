"""Generators of test videos with known truth (no pytest dependency).

- :mod:`gen.videos`: synthetic H.264 videos of flat looks at any frame rate, with exact cut times.
- :mod:`gen.evalads`: four ads cut from the real clips in ``tests/data``, stills and truth files
  for ``archive eval`` (``python tests/gen/evalads.py DIR``: ``make eval-demo``).
- :mod:`gen.versionads`: versions of the same films (re-encode, letterbox, cut-down, ...) and the
  footage they share (``python tests/gen/versionads.py DIR``: ``make versions-demo``).
- :mod:`gen.recurads`: many videos whose shots recur (a packshot, a logo card).
- :mod:`gen.textads`: ads with written words on screen at known shots.
- :mod:`gen.make_golden`: the golden outputs of the random-weight test model
  (``tests/data/golden_vit_s_32_alt.npz``; ``python tests/gen/make_golden.py``).

The footage generators cut the real clips with :mod:`archive.bench.transitions`.
"""
