"""How results look: tables for people, JSON/CSV for programs. No computing here."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import os
from typing import Any, Sequence

from rich import box
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from search.results import QueryResult
from search.said import SIMILARITY as SAID_SIMILARITY
from search.sql import SqlResult
from search.written import SIMILARITY

# No emoji codes: ":dog" in a query or a file name is text. User text goes through esc() (rich
# markup), so "[/b]" in a file name is printed as it is.
out = Console(soft_wrap=False, emoji=False)


err = Console(stderr=True, soft_wrap=True, emoji=False)  # messages stay one line each, whatever the width


def _default(o: Any) -> Any:
    if isinstance(o, (dt.datetime, dt.date, dt.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return float(o)
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, ensure_ascii=False)


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def search_table(res: QueryResult) -> Table:
    present = sum(r.present for r in res.results)
    level = f"threshold {res.threshold:.3g}"
    if res.expected_false is not None:  # example images: each video its own level
        level = (
            f"level {res.threshold:.4f} in a median video, at most {res.expected_false:.3g} false videos "
            "expected per query"
        )
    t = Table(
        title=f"[bold]{esc(res.query)}[/]  ({res.kind} query, {level}; "
        f"present in {present} of {len(res.results)} shown, {res.videos_searched} searched; times in s)",
        title_justify="left",
    )
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("video", overflow="fold", max_width=40)
    shards = any(r.store is not None for r in res.results)
    if shards:
        t.add_column("store", overflow="fold", max_width=24)
    t.add_column("present")
    t.add_column("first", justify="right")
    t.add_column({"said": "said for", "sound": "heard for"}.get(res.kind, "on screen"), justify="right")
    t.add_column("best at", justify="right")
    t.add_column("score", justify="right")
    t.add_column("segments", overflow="fold", min_width=10)
    for i, r in enumerate(res.results, 1):
        texts = r.segment_texts or [None] * len(r.segments)
        srcs = r.segment_sources or [None] * len(r.segments)
        segs = ", ".join(
            f"{s.start_s:.2f}-{s.end_s:.2f}"
            + (f' "{x}"' if x else "")
            + (f" ({'query' if r.sources_of == 'query' else 'file'} {src[0]:.2f}-{src[1]:.2f})" if src else "")
            for s, x, src in zip(r.segments[:6], texts, srcs)
        )
        if len(r.segments) > 6:
            segs += f", +{len(r.segments) - 6} more"
        t.add_row(
            str(i),
            esc(os.path.basename(r.video)),
            *([esc(os.path.basename(r.store or ""))] if shards else []),
            "[green]yes[/]" if r.present else "not transcribed" if r.transcribed is False else "no",
            fmt_s(r.first_seen_s),
            fmt_s(r.duration_s) if r.present else "-",
            fmt_s(r.best_s),
            f"{r.score:.4f}" if r.level is not None else f"{r.score:.3f}",
            segs or "-",
        )
    return t


def print_search(results: Sequence[QueryResult], as_json: bool) -> None:
    for res in results:
        for w in res.warnings:
            err.print(
                f"[yellow]warning:[/] {esc(res.query[:60])}{'...' if len(res.query) > 60 else ''}: {esc(w)}",
                highlight=False,
            )
        if as_json:
            print(dumps(res.to_dict()), flush=True)
        else:
            out.print(search_table(res))


def print_sql(res: SqlResult, fmt: str) -> None:
    if fmt == "json":
        print(dumps(res.records()))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(res.columns)
        for row in res.rows:
            w.writerow([_default(v) if v is not None and not isinstance(v, (int, float, str)) else v for v in row])
        print(buf.getvalue(), end="")
    else:
        t = Table(show_lines=False)
        for c in res.columns:
            t.add_column(c, overflow="fold")
        for row in res.rows:
            t.add_row(*["NULL" if v is None else (f"{v:.4g}" if isinstance(v, float) else esc(str(v))) for v in row])
        out.print(t)
        err.print(f"{len(res.rows)} row{'s' if len(res.rows) != 1 else ''}", style="dim")


def print_versions(rep: Any, as_json: bool) -> None:
    """``archive versions``: the groups (members, length, shared, longest) and, for videos asked
    about, the aligned segments as "a.mp4 0.0-12.4 s = b.mp4 3.1-15.5 s"."""
    if as_json:
        print(dumps(rep.to_dict()))
        return
    for g in rep.groups:
        if g.members:
            t = Table(title=f"group {g.group_id}: {len(g.members)} versions", title_justify="left")
            for c in ("video", "length (s)", "shared (s)", ""):
                t.add_column(c, overflow="fold")
            for m in g.members:
                t.add_row(esc(m.name), f"{m.duration_s:.1f}", f"{m.shared_s:.1f}", "longest" if m.is_longest else "")
            out.print(t)
        elif g.segments:
            out.print(f"shared footage below --min-shared {rep.min_shared_s:g} s (not grouped):", highlight=False)
        for sg in g.segments:
            out.print(
                f"  {esc(sg['name_a'])} {sg['a_start_s']:.1f}-{sg['a_end_s']:.1f} s = "
                f"{esc(sg['name_b'])} {sg['b_start_s']:.1f}-{sg['b_end_s']:.1f} s",
                highlight=False,
            )
    if not rep.groups:
        what = (
            "these videos share no footage with another indexed video" if rep.videos else "no two videos share footage"
        )
        err.print(f"{what} (at least {rep.min_shared_s:g} s makes versions).", highlight=False)
    else:
        n = sum(len(g.members) for g in rep.groups)
        err.print(
            f"{len([g for g in rep.groups if g.members])} group(s), {n} video(s); grouped by at least "
            f"{rep.min_shared_s:g} s of shared footage (--min-shared).",
            style="dim",
            highlight=False,
        )
    if rep.not_compared:
        err.print(
            f"[yellow]{rep.not_compared} video(s) not compared yet[/]: run `archive index` on any folder once "
            "(they are compared from their stored vectors; nothing is re-embedded).",
            highlight=False,
        )


def print_labels(labels: Sequence[Any], as_json: bool) -> None:
    if as_json:
        print(dumps([lab.to_dict() for lab in labels]))
        return
    t = Table(title="labels", title_justify="left")
    for c in ("label", "prompts", "rule", "videos", "on screen (s)"):
        t.add_column(c, overflow="fold")
    for lab in labels:
        c = lab.calibration
        if lab.threshold is None:
            rule = "presence rule"
        elif c is None:
            rule = f"cosine >= {lab.threshold:g}"
        else:
            aim = "best F1" if c.target_precision is None else f"precision >= {c.target_precision:g}"
            rule = (
                f"calibrated: cosine >= {lab.threshold:.4f} ({aim}; P {c.precision:.2f} R {c.recall:.2f} "
                f"on {c.videos} judged videos, {c.positives} present; "
                f"{c.calibrated_at:%Y-%m-%d})"
            )
        words = f"; written: {', '.join(lab.ocr)}" if lab.ocr else ""
        words += f"; said: {', '.join(lab.said)}" if lab.said else ""
        t.add_row(
            esc(lab.name), esc("; ".join(lab.prompts) + words), esc(rule), str(lab.videos_present), f"{lab.seconds:.2f}"
        )
    out.print(t)


def _p(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _table(title: str, columns: Sequence[str]) -> Table:
    """A compact table (no vertical rules) whose first column is the query; numbers never wrap."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for i, c in enumerate(columns):
        if i == 0:
            t.add_column(c, overflow="fold", min_width=12, max_width=36)
        else:
            t.add_column(c, justify="right", no_wrap=True)
    return t


def _query_name(q: str) -> str:
    """A query as a table shows it: an example image by its file name (markup escaped)."""
    kind, sep, rest = q.partition(":")
    return esc(f"image:{os.path.basename(rest)}" if sep and kind == "image" else q)


def print_problems(problems: Sequence[str]) -> None:
    """Rows of a truth file that could not be used (or were read with a remark), one line each."""
    for p in problems:
        err.print(f"[yellow]warning:[/] {esc(p)}", highlight=False)


def print_eval(rep: Any, as_json: bool) -> None:
    """The tables of ``archive eval``: presence and ranking, first seen, time on screen, and the
    rule against plain cosine cuts."""
    print_problems(rep.problems)
    if as_json:
        print(dumps(rep.to_dict()))
        return
    rule = "the presence rule" if rep.threshold is None else f"cosine >= {rep.threshold:g}"
    if any(q.kind == "ocr" for q in rep.queries):
        rule += f" (ocr: queries: similarity >= {SIMILARITY / 100:g} of the words read)"
    if any(q.kind == "said" for q in rep.queries):
        rule += f" (said: queries: similarity >= {SAID_SIMILARITY / 100:g} of every word heard)"
    out.print(
        f"[bold]{esc(os.path.basename(rep.truth))}[/]: {len(rep.queries)} queries, {rep.judged_videos} judged videos, "
        f"{rep.rows} rows read"
        + (f", {len(rep.problems)} with problems" if rep.problems else "")
        + f"; answers by {rule}.",
        highlight=False,
        soft_wrap=True,
    )
    t = _table(
        "presence per video (P precision, R recall) and ranking (AP)",
        ("query", "judged", "present", "TP", "FP", "FN", "P", "R", "F1", "AP"),
    )
    for q in rep.queries:
        c = q.counts
        t.add_row(
            _query_name(q.query),
            str(q.judged),
            str(q.positives),
            str(c.tp),
            str(c.fp),
            str(c.fn),
            _p(c.precision),
            _p(c.recall),
            _p(c.f1),
            _p(q.ap),
        )
    m = rep.micro
    t.add_section()
    t.add_row("all (micro)", "", "", str(m.tp), str(m.fp), str(m.fn), _p(m.precision), _p(m.recall), _p(m.f1), "")
    t.add_row(
        "mean (macro)", "", "", "", "", "", _p(rep.macro_precision), _p(rep.macro_recall), _p(rep.macro_f1), _p(rep.map)
    )
    out.print(t)

    rows = [(_query_name(q.query), q.times) for q in rep.queries] + [("all", rep.times)]
    t = _table(
        "first seen: |predicted - true| on videos present in both truth and answer",
        ("query", "videos", "mean s", "median s", "max s", "mean frames", "max frames"),
    )
    for i, (name, s_) in enumerate(rows):
        if i == len(rows) - 1:
            t.add_section()
        t.add_row(
            name,
            str(s_.videos),
            _p(s_.first_mean_s, 3),
            _p(s_.first_median_s, 3),
            _p(s_.first_max_s, 3),
            _p(s_.first_mean_frames, 1),
            _p(s_.first_max_frames, 1),
        )
    out.print(t)
    t = _table(
        "time on screen: |predicted - true| duration, and temporal IoU",
        ("query", "mean s", "max s", "mean rel", "IoU mean", "R@0.5", "R@0.7"),
    )
    for i, (name, s_) in enumerate(rows):
        if i == len(rows) - 1:
            t.add_section()
        t.add_row(
            name,
            _p(s_.duration_mean_s, 3),
            _p(s_.duration_max_s, 3),
            _p(s_.duration_mean_rel),
            _p(s_.iou_mean),
            _p(s_.r_at_05),
            _p(s_.r_at_07),
        )
    out.print(t)

    tp = rep.sweep.target_precision
    words = any(q.kind in ("ocr", "said") for q in rep.queries)
    pictures = any(q.kind not in ("ocr", "said") for q in rep.queries)
    what = "cosine" if not words else "similarity" if not pictures else "cosine (ocr: and said: queries: similarity)"
    t = _table(
        f"a plain {what} cut instead: the best-F1 cut, and the lowest cut with P >= {tp:g}",
        ("query", "best cut", "P", "R", "F1", f"P>={tp:g} cut", "P", "R"),
    )

    def sweep_row(name: str, sw: Any) -> None:
        b, g = sw.best, sw.target
        t.add_row(
            name,
            f"{b.threshold:.6f}" if b else "-",
            _p(b.precision if b else None),
            _p(b.recall if b else None),
            _p(b.f1 if b else None),
            f"{g.threshold:.6f}" if g else "none",
            _p(g.precision if g else None),
            _p(g.recall if g else None),
        )

    for q in rep.queries:
        sweep_row(_query_name(q.query), q.sweep)
    t.add_section()
    sweep_row("all (one cut)" if not (words and pictures) else "all but ocr: and said: (one cut)", rep.sweep)
    out.print(t)


def print_calibration(cal: Any, as_json: bool) -> None:
    print_problems(cal.problems)
    if as_json:
        print(dumps(cal.to_dict()))
        return
    aim = "best F1" if cal.target_precision is None else f"the lowest cut with precision >= {cal.target_precision:g}"
    b = cal.before
    err.print(
        f"label [bold]{esc(cal.label)}[/]: threshold cosine >= {cal.threshold:.6f} ({aim}); on {cal.judged} judged "
        f"videos ({cal.positives} present): precision {cal.precision:.3f}, recall {cal.recall:.3f}, "
        f"F1 {cal.f1:.3f} (its rule before: {b.precision:.3f} / {b.recall:.3f} / {b.f1:.3f}). "
        "Its answers in video_labels follow the new threshold.",
        highlight=False,
    )


def print_classes(classes: Sequence[Any], as_json: bool) -> None:
    if as_json:
        for c in classes:
            print(dumps(c.to_dict()))
        return
    if not classes:
        err.print("no videos in scope.")
        return
    names = list(classes[0].shares)
    t = Table(title="share of screen time per label", title_justify="left")
    t.add_column("video", overflow="fold", max_width=40)
    t.add_column("best")
    for n in names:
        t.add_column(esc(n), justify="right")
    for c in classes:
        t.add_row(
            esc(os.path.basename(c.video)), f"[bold]{esc(c.best)}[/]", *[f"{100 * c.shares[n]:.0f}%" for n in names]
        )
    out.print(t)
