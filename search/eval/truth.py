"""The truth file of ``archive eval``: what a person saw on screen, read and checked line by line.

A CSV file with a header, ``video,query,start_s,end_s`` (columns in any order, others ignored),
one row per on-screen interval::

    video,query,start_s,end_s
    ads/beach_01.mp4,a beach,12.4,18.0
    ads/beach_01.mp4,image:packshot.png,27.0,30.0
    ads/city_02.mp4,a beach,,
    ads/city_02.mp4,label:alcohol,3.0,5.5

* ``video``: an indexed file's path, its file name, or its path relative to an indexed folder
  (or to this file's folder). It must name one video.
* ``query``: a text, ``image:PATH`` (query by example; PATH relative to this file's folder or the
  working directory), ``label:NAME`` (a saved label), ``ocr:WORDS`` (words written on screen, as
  ``archive search --ocr`` finds them) or ``said:PHRASE`` (words spoken, as ``archive search
  --said`` finds them).
* empty ``start_s`` and ``end_s``: the query is absent from that video.

The judged videos of a query are all the videos named anywhere in the file; a judged video with no
row for a query counts as absent for it. Intervals may overlap and are merged.

A bad row is reported as one line naming its line number, and the rest is read: a row with bad
times leaves its video unjudged for that query (its truth is not known), a query whose image
cannot be read or whose label is not saved is left out.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from indexer.errors import QueryError
from indexer.store import LabelDef, VideoRef
from indexer.store.records import normalize

from .metrics import Interval, merge

COLUMNS = ("video", "query", "start_s", "end_s")
HEADER = ",".join(COLUMNS)


@dataclass
class TruthQuery:
    """One query of the truth file and what it says per video."""

    query: str  # as written in the file
    kind: str  # text, image, label, ocr or said
    target: str  # the text, the image file (resolved), the label's name, or the written or spoken words
    intervals: dict[int, list[Interval]] = field(default_factory=dict)  # per video with rows; [] = absent
    unjudged: set[int] = field(default_factory=set)  # videos whose rows for this query were bad
    lines: list[int] = field(default_factory=list)


@dataclass
class Truth:
    """A read truth file: its queries, the judged videos, and the problems found."""

    path: str
    queries: list[TruthQuery]
    videos: list[int]  # judged videos, by id
    refs: dict[int, VideoRef]
    problems: list[str] = field(default_factory=list)
    rows: int = 0  # rows read without a problem

    def judged(self, q: TruthQuery) -> list[int]:
        """The videos judged for ``q``: every video named in the file, but those of its bad rows."""
        return [v for v in self.videos if v not in q.unjudged]

    def present(self, q: TruthQuery, video_id: int) -> bool:
        return bool(q.intervals.get(video_id))


def read_truth(path: str | os.PathLike[str], refs: Sequence[VideoRef], labels: Sequence[LabelDef]) -> Truth:
    """Read and check a truth file against the indexed videos and the saved labels.

    Raises:
        QueryError: the file cannot be read, is not UTF-8 text at all, or has no usable row.
    """
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise QueryError(f"cannot read the truth file {path}: {exc.strerror or exc}.") from exc
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise QueryError(
            f"{path} is not UTF-8 text (it has NUL bytes: UTF-16, or not text at all): save it as CSV UTF-8."
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # the byte-order mark some spreadsheets write
    reader = _Reader(p.resolve(), refs, {lab.name: lab for lab in labels})
    for n, raw in enumerate(re.split(rb"\r\n|\r|\n", data), 1):  # any line ending, as text mode reads them
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reader.problem(n, f"not UTF-8 text (byte {exc.start + 1}); save the file as CSV UTF-8")
            continue
        reader.line(n, line)
    truth = reader.finish()
    truth.path = str(path)
    if not truth.rows:
        n = len(truth.problems)
        more = (f"; {truth.problems[0].rstrip('.')}" + (f" (and {n - 1} more problems)" if n > 1 else "")) if n else ""
        raise QueryError(f"{path}: no usable row{more}. Expected a header {HEADER} and one row per interval.")
    return truth


class _Reader:
    def __init__(self, path: Path, refs: Sequence[VideoRef], labels: dict[str, LabelDef]) -> None:
        self.path = path
        self.refs = list(refs)
        self.by_id = {r.video_id: r for r in self.refs}
        self.by_path = {r.path: r for r in self.refs}
        self.by_name: dict[str, list[VideoRef]] = {}
        for r in self.refs:
            self.by_name.setdefault(r.name, []).append(r)
        self.seen: dict[str, tuple[VideoRef | None, str]] = {}  # each distinct video string, looked up once
        self.labels = labels
        self.cols: dict[str, int] | None = None
        self.problems: list[str] = []
        self.queries: dict[str, TruthQuery] = {}
        self.bad_queries: dict[str, str] = {}  # query -> why it is left out
        self.videos: dict[int, None] = {}
        self.absent_lines: dict[tuple[str, int], int] = {}
        self.rows = 0

    def problem(self, n: int, what: str) -> None:
        self.problems.append(f"line {n}: {what}.")

    def line(self, n: int, line: str) -> None:
        if not line.strip():
            return
        try:
            fields = [f.strip() for f in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            return self.problem(n, f"not a CSV row ({exc}); give one row per line, quotes closed on the same line")
        if not any(fields):  # an empty row as spreadsheets write it (",,,")
            return
        if self.cols is None:
            low = [f.lower() for f in fields]
            if "video" in low and "query" in low:
                missing = [c for c in COLUMNS if c not in low]
                if missing:  # every row would read as "absent": nothing could be measured right
                    raise QueryError(
                        f"{self.path.name} line {n}: the header has no {' or '.join(missing)} column; "
                        f"expected {HEADER}."
                    )
                self.cols = {c: low.index(c) for c in COLUMNS}
                return None
            self.problem(n, f"no header row; expected {HEADER} (read as data in that order)")
            self.cols = {c: i for i, c in enumerate(COLUMNS)}
        self.row(n, fields)

    def row(self, n: int, fields: list[str]) -> None:
        cols = self.cols
        assert cols is not None

        def get(c: str) -> str:
            return fields[cols[c]] if c in cols and cols[c] < len(fields) else ""

        video, query = get("video"), get("query")
        if not video:
            return self.problem(n, "no video")
        if not query:
            return self.problem(n, "no query")
        ref, why = self.video(video)
        if ref is None:
            return self.problem(n, why)
        self.videos.setdefault(ref.video_id, None)
        q = self.query(n, query)
        if q is None:
            return None
        q.lines.append(n)
        span, why = self.times(get("start_s"), get("end_s"), ref)
        if why:
            q.unjudged.add(ref.video_id)
            return self.problem(n, why)
        have = q.intervals.setdefault(ref.video_id, [])
        key = (q.query, ref.video_id)
        if span is None:
            if have:
                return self.problem(
                    n,
                    f"says {query!r} is absent from {ref.name}, but an earlier line gives it an "
                    "interval (the intervals are kept)",
                )
            self.absent_lines[key] = n
        else:
            if key in self.absent_lines:
                self.problem(
                    n,
                    f"gives {query!r} an interval in {ref.name}, but line {self.absent_lines.pop(key)} "
                    "says it is absent (the interval is kept)",
                )
            have.append(span)
            q.intervals[ref.video_id] = merge(have)
        self.rows += 1
        return None

    def video(self, v: str) -> tuple[VideoRef | None, str]:
        """The one indexed video ``v`` names (see the module docstring), or why there is none."""
        if v not in self.seen:
            self.seen[v] = self._video(v)
        return self.seen[v]

    def _video(self, v: str) -> tuple[VideoRef | None, str]:
        cands: list[Path] = [Path(v).expanduser()]
        if not cands[0].is_absolute():
            cands = [Path(os.path.abspath(cands[0])), Path(os.path.abspath(self.path.parent / v))]
        for c in cands:
            if str(c) in self.by_path:
                return self.by_path[str(c)], ""
        tail = "/" + v.replace(os.sep, "/").lstrip("./")
        hit = self.by_name.get(v) or [r for r in self.refs if r.path.replace(os.sep, "/").endswith(tail)]
        if len(hit) == 1:
            return hit[0], ""
        if hit:
            return None, (
                f"{v!r} names {len(hit)} indexed videos ({hit[0].path}, {hit[1].path}, ...); "
                "give a longer part of its path"
            )
        return None, f'no indexed video has the path or name {v!r} (see `archive sql "SELECT path FROM videos"`)'

    def query(self, n: int, text: str) -> TruthQuery | None:
        if text in self.queries:
            return self.queries[text]
        if text in self.bad_queries:
            self.problem(n, self.bad_queries[text])
            return None
        kind, _, rest = text.partition(":")
        kind = kind.strip().lower()
        why = ""
        if kind == "image" and rest.strip():
            target = self.image(rest.strip())
            if target is None:
                why = (
                    f"{text}: no readable image at {rest.strip()} (relative paths are read from {self.path.parent} "
                    "or the working directory)"
                )
            q = TruthQuery(text, "image", target or "")
        elif kind == "label" and rest.strip():
            name = rest.strip()
            if name not in self.labels:
                why = f"{text}: no saved label named {name!r} (see `archive label list`)"
            q = TruthQuery(text, "label", name)
        elif kind == "ocr" and rest.strip():
            if not normalize(rest):
                why = f"{text}: give letters or digits after ocr: (punctuation and spaces are ignored)"
            q = TruthQuery(text, "ocr", rest.strip())
        elif kind == "said" and rest.strip():
            if not normalize(rest):
                why = f"{text}: give letters or digits after said: (punctuation is ignored)"
            q = TruthQuery(text, "said", rest.strip())
        else:
            q = TruthQuery(text, "text", text)
        if why:
            self.bad_queries[text] = why
            self.problem(n, why)
            return None
        self.queries[text] = q
        return q

    def image(self, rel: str) -> str | None:
        from PIL import Image  # lazy: Pillow is loaded only for image files

        p = Path(rel).expanduser()
        for c in [p] if p.is_absolute() else [self.path.parent / p, Path(os.path.abspath(p))]:
            if c.is_file():
                try:
                    with Image.open(c) as im:
                        im.load()  # decodes it all: a truncated file fails here, not halfway through the run
                    return str(c.resolve())
                except Exception:  # (PIL raises many kinds for a bad file)
                    return None
        return None

    @staticmethod
    def times(a: str, b: str, ref: VideoRef) -> tuple[Interval | None, str]:
        """The interval of ``start_s``/``end_s`` (None: absent), or why they are bad."""
        if not a and not b:
            return None, ""
        if not a or not b:
            return None, "give both start_s and end_s (or neither, for absent)"
        try:
            s, e = float(a), float(b)
        except ValueError:
            return None, f"start_s {a!r} and end_s {b!r} must be seconds, like 12.4"
        if not (s == s and e == e) or s in (float("inf"), float("-inf")) or e in (float("inf"), float("-inf")):
            return None, f"start_s {a!r} and end_s {b!r} must be finite seconds"
        if s < 0:
            return None, f"start_s {s:g} is before the start of the video"
        if e < s:
            return None, f"end_s {e:g} is before start_s {s:g}"
        dur = ref.duration_s
        slack = 1.0 / ref.fps if ref.fps else 0.05  # one native frame
        if dur is not None and s >= dur:
            return None, f"start_s {s:g} is at or past the end of {ref.name} ({dur:.3f} s)"
        if e == s:  # a single frame
            e = s + slack
        if dur is not None and e > dur + slack + 1e-6:
            return None, f"end_s {e:g} is past the end of {ref.name} ({dur:.3f} s)"
        return (s, min(e, dur) if dur is not None else e), ""

    def finish(self) -> Truth:
        queries = list(self.queries.values())
        return Truth(str(self.path), queries, list(self.videos), self.by_id, self.problems, self.rows)
