"""How an index run's report and the store's own reports look (``archive info``, ``check``,
``optimize``): tables for people, JSON for programs. No computing here."""

from __future__ import annotations

from typing import Any

from rich.markup import escape as esc
from rich.table import Table

from indexer import settings
from indexer.run.report import IndexReport
from indexer.store import StoreInfo
from search.presence import IMAGE_RATE, ImageCalibration

from .render import dumps, err, out


def info_dict(info: StoreInfo) -> dict[str, Any]:
    return {
        "videos": info.videos,
        "frames": info.frames,
        "seconds": info.seconds,
        "model": info.model,
        "pretrained": info.pretrained,
        "dim": info.dim,
        "bytes": info.bytes,
        "store": info.path,
        "failures": info.failures,
        "schema_version": info.schema_version,
        "segments": info.segments,
        "shot_detectors": info.shot_detectors,
        "transitions": info.transitions,
        "vector_storage": info.vector_kinds,
        "query_index": info.query_index,
        "ivf": info.ivf,
        "ocr": info.ocr,
        "text_lines": info.text_lines,
        "text_videos": info.text_videos,
        "speech": info.speech,
        "speech_lines": info.speech_lines,
        "speech_words": info.speech_words,
        "speech_videos": info.speech_videos,
        "speech_heard": info.speech_heard,
        "sound_hashes": info.sound_hashes,
        "sound_videos": info.sound_videos,
        "sound_heard": info.sound_heard,
        "sound_seconds": round(info.sound_seconds, 3),
        "versions": info.versions,
        "image_levels": info.image_levels,
    }


def print_info(info: StoreInfo, as_json: bool) -> None:
    d = info_dict(info)
    if as_json:
        print(dumps(d))
        return
    t = Table(show_header=False, title=f"archive at {info.path}", title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value")
    d["seconds"] = f"{info.seconds:.1f} ({info.seconds / 3600:.2f} h)"
    d["bytes"] = f"{info.bytes:,} ({info.bytes / 2**20:.1f} MiB)"
    d["shot_detectors"] = ", ".join(f"{k} {v}" for k, v in info.shot_detectors.items()) or "-"
    d["transitions"] = ", ".join(f"{k} {v}" for k, v in info.transitions.items()) or "-"
    d["vector_storage"] = (
        ", ".join(f"{ {'f16': 'fp16', 'flat': 'fp32'}.get(k, k) } {v:,}" for k, v in info.vector_kinds.items()) or "-"
    )
    if info.ivf is None:
        d.pop("ivf")
    else:
        i = info.ivf
        d["ivf"] = (
            f"{i['factory']}, trained on {i['trained_vectors']:,} of {i['archive_vectors_at_training']:,} "
            f"vectors; {i['vectors_with_codes']:,} have codes ({i['lists_vectors']:,} in its lists file); "
            f"archive {i['growth_since_training']}x since{' (stale: run `archive optimize`)' if i['stale'] else ''}"
            + (
                "; trained by an index run for matching versions only (`archive optimize --ivf` lets "
                "queries of archives past ARCHIVE_IVF_FRAMES use it too)"
                if i.get("matching_only")
                else ""
            )
        )
    d["ocr"] = (
        f"on: {info.text_lines:,} text lines from {info.text_videos} of {info.videos} videos"
        if info.ocr
        else "off (archive index FOLDER --ocr reads the text on screen)"
    )
    d.pop("text_lines")
    d.pop("text_videos")
    d["speech"] = (
        f"on: {info.speech_lines:,} spoken lines, {info.speech_words:,} words; {info.speech_videos} of "
        f"{info.videos} videos transcribed, something said in {info.speech_heard}"
        if info.speech or info.speech_videos
        else "off (archive index FOLDER --speech transcribes what is said)"
    )
    for k in ("speech_lines", "speech_words", "speech_videos", "speech_heard"):
        d.pop(k)
    d["sound"] = (
        f"{info.sound_hashes:,} landmark hashes from {info.sound_seconds:.1f} s of sound "
        f"({info.sound_hashes / info.sound_seconds if info.sound_seconds else 0:.0f} a second); {info.sound_videos} of "
        f"{info.videos} videos fingerprinted, {info.sound_heard} with sound (`archive search --sound FILE`)"
        + (
            f"; {info.videos - info.sound_videos} not yet: run `archive index` on their folders"
            if info.sound_videos < info.videos
            else ""
        )
    )
    for k in ("sound_hashes", "sound_videos", "sound_heard", "sound_seconds"):
        d.pop(k)
    v = info.versions
    d["versions"] = (
        f"{v['groups']} group(s) of {v['videos_in_groups']} videos sharing at least {v['min_shared_s']:g} s, "
        f"{v['matches']:,} shared segments (`archive versions`)"
        + (f"; {v['not_compared']} video(s) not compared yet: run `archive index`" if v["not_compared"] else "")
    )
    lv = info.image_levels

    cal = None if lv is None else ImageCalibration.from_dict(lv)
    if cal is None:
        d["image_levels"] = (
            "not kept yet"
            + (" (kept by an older version)" if lv is not None else "")
            + ": queries by example measure them; the next `archive index` keeps them"
        )
    else:
        same = "-" if cal.same_shot is None else f"{cal.same_footage():.4f}"
        over = {"videos": "pairs of different videos", "shots": "pairs of the video's shots"}.get(
            cal.over, "too few pairs"
        )
        vc = cal.video
        chance = (
            f"chance per pair {cal.chance:.4f} from {cal.pairs:,} {over}"
            if vc is None
            else f"chance in a video of {vc.median_shots} shots {float(cal.chance_level()):.4f} (margin "
            f"{vc.margin:.4f}) from {vc.probes:,} probes x {vc.videos:,} {'videos' if cal.over != 'shots' else 'shots'}"
        )
        d["image_levels"] = (
            f"an example matches at cosine >= {cal.threshold():.4f} in a median video (same footage {same}, {chance}, "
            f"{cal.left_out:,} pairs left out as the same footage)"
            + ("" if lv.get("current") else "; the archive changed since: the next `archive index` measures them again")
        )
        n = cal.archive_videos
        expected = cal.expected_false()
        d["image_false_rate"] = (
            f"an example whose footage is not in the archive is reported present in at most 1 video in "
            f"{1 / IMAGE_RATE:,.0f}: at most {expected:.3g} false videos per query at this size "
            f"({n:,} videos); `archive search --false-videos N` sets it for the whole archive"
            if expected is not None
            else "not stated: too few shots to measure how often unrelated footage reaches a video's best "
            "shot (the level for single pairs of samples stands in); index more videos"
        )
        if cal.overlap():
            d["image_cannot_tell"] = cal.overlap_line()
    for k, v in d.items():
        if k != "store":
            t.add_row(k, str(v))
    out.print(t)


def report_dict(r: IndexReport) -> dict[str, Any]:
    return {
        "store": r.store,
        "model": r.model,
        "pretrained": r.pretrained,
        "files_seen": r.files_seen,
        "indexed": r.indexed,
        "skipped": r.skipped,
        "failed": r.failed,
        "partial": r.partial,
        "frames": r.frames,
        "video_seconds": round(r.video_seconds, 3),
        "wall_s": round(r.wall_s, 3),
        "failures": [{"path": p, "error": e} for p, e in r.failures],
        "partly": [{"path": p, "error": n} for p, n in r.notes],
        "missing": r.missing,
        "thumbnails_added": r.thumbnails_added,
        "ocr": r.ocr,
        "text_lines": r.text_lines,
        "text_added": r.text_added,
        "text_not_read": [{"path": p, "error": n} for p, n in r.text_notes],
        "speech": r.speech,
        "speech_lines": r.speech_lines,
        "speech_words": r.speech_words,
        "speech_added": r.speech_added,
        "speech_sound_s": round(r.speech_sound_s, 3),
        "speech_s": round(r.speech_s, 3),
        "speech_rtf": None if r.speech_rtf is None else round(r.speech_rtf, 4),
        "speech_notes": [{"path": p, "error": n} for p, n in r.speech_notes],
        "sound": r.sound,
        "sound_videos": r.sound_videos,
        "sound_hashes": r.sound_hashes,
        "sound_seconds": round(r.sound_seconds, 3),
        "sound_s": round(r.sound_s, 3),
        "sound_sorted": r.sound_sorted,
        "sound_notes": [{"path": p, "error": n} for p, n in r.sound_notes],
        "versions_compared": r.versions_compared,
        "matches_found": r.matches_found,
        "versions_s": r.versions_s,
        "lists_note": r.lists_note,
        "ivf_trained_s": r.ivf_trained_s,
        "ivf_frames": r.ivf_frames,
    }


def print_report(r: IndexReport, as_json: bool) -> None:
    if as_json:
        print(dumps(report_dict(r)))
        return
    speed = f", {r.frames / r.wall_s:.1f} frames/s" if r.frames and r.wall_s > 0 else ""
    err.print(
        f"[bold]indexed {r.indexed} video{'s' if r.indexed != 1 else ''}[/]"
        f"{f' ({r.partial} partly)' if r.partial else ''}, skipped {r.skipped} unchanged, "
        f"[{'red' if r.failed else 'default'}]{r.failed} failed[/]: {r.frames} frames from "
        f"{r.video_seconds:.1f} s of video in {r.wall_s:.1f} s{speed}."
    )
    if r.ocr and (r.indexed or r.text_added):
        added = f"; {r.text_added} video(s) indexed before got their text (nothing re-embedded)" if r.text_added else ""
        err.print(f"on-screen text: {r.text_lines} line(s) read{added}.", highlight=False)
    if r.speech and (r.indexed or r.speech_added):
        added = f"; {r.speech_added} video(s) indexed before got theirs (nothing re-embedded)" if r.speech_added else ""
        rtf = f", the recogniser at {r.speech_rtf:.2f} s per second of sound" if r.speech_rtf is not None else ""
        err.print(
            f"speech: {r.speech_lines} line(s), {r.speech_words} word(s) heard in {r.speech_sound_s:.1f} s of "
            f"sound{rtf}{added}.",
            highlight=False,
        )
    if r.sound_videos:
        err.print(
            f"sound: {r.sound_videos} video(s) fingerprinted, {r.sound_hashes:,} landmark hashes from "
            f"{r.sound_seconds:.1f} s of sound in {r.sound_s:.1f} s"
            + ("; the hash table was put back in hash order" if r.sound_sorted else "")
            + ".",
            highlight=False,
        )
    if r.ivf_trained_s:
        err.print(
            f"IVF index trained over {r.ivf_frames:,} frames in {r.ivf_trained_s:.1f} s (once: the archive reached "
            f"{settings.match_ivf_frames():,} frames; new videos get their codes as they are committed). "
            "Comparing new videos for shared footage now goes through it.",
            highlight=False,
        )
    if r.versions_compared:
        err.print(
            f"versions: {r.versions_compared} video(s) compared with the archive, {r.matches_found} shared "
            f"segment(s) found in {r.versions_s:.1f} s; see `archive versions`.",
            highlight=False,
        )
        if r.versions_note:
            err.print(f"[yellow]note:[/] {esc(r.versions_note)}", highlight=False)
    if r.lists_note:
        err.print(f"[yellow]note:[/] {esc(r.lists_note)}", highlight=False)
    for p, why in r.text_notes:
        err.print(
            f"[yellow]no text read[/] {esc(p)}: {esc(why.removeprefix('on-screen text not read: '))}", highlight=False
        )
    for p, why in r.speech_notes:
        err.print(f"[yellow]speech[/] {esc(p)}: {esc(why.removeprefix('speech not transcribed: '))}", highlight=False)
    if r.thumbnails_added:
        err.print(
            f"added thumbnails to {r.thumbnails_added} frames of videos indexed before thumbnails existed "
            "(nothing re-embedded).",
            highlight=False,
        )
    if r.missing:
        err.print(
            f"{len(r.missing)} indexed file(s) no longer exist on disk (still searchable), e.g. {r.missing[0]}",
            style="yellow",
        )
    if r.damaged_file:
        err.print(f"the vector file was unreadable: moved to {r.damaged_file} and rebuilt.", style="yellow")
    if r.repaired:
        left = [p for p in r.repaired if p not in set(r.indexed_paths)]
        err.print(
            f"{len(r.repaired)} video(s) had lost their vectors; {len(r.repaired) - len(left)} re-embedded now.",
            style="yellow",
        )
        if left:
            err.print(f"index their files again to restore the rest, e.g. archive index {left[0]!r}", style="yellow")
    err.print(f"store: {r.store} ({r.model}, {r.pretrained})", style="dim")


def print_check(rep: Any, as_json: bool) -> None:
    if as_json:
        print(
            dumps(
                {
                    "ok": rep.ok,
                    "store": rep.store,
                    "videos": rep.videos,
                    "frames": rep.frames,
                    "vectors": rep.vectors,
                    "segments": rep.segments,
                    "problems": rep.problems,
                    "notes": rep.notes,
                    "repaired": rep.repaired,
                }
            )
        )
        return
    for r in rep.repaired:
        err.print(f"repaired: {esc(r)}", highlight=False)
    for p in rep.problems:
        err.print(f"[red]problem:[/] {esc(p)}", highlight=False)
    for n in rep.notes:
        err.print(f"note: {esc(n)}", style="yellow", highlight=False)
    verdict = "[green]ok[/]" if rep.ok else f"[red]{len(rep.problems)} problem(s)[/]"
    err.print(
        f"{verdict}: {rep.videos} videos, {rep.frames} frames in the catalog, {rep.vectors} vectors in "
        f"{rep.segments} segment{'s' if rep.segments != 1 else ''}.",
        highlight=False,
    )


def print_optimize(rep: Any, as_json: bool) -> None:
    d = {
        "merged": rep.merged,
        "written": rep.written,
        "rows_copied": rep.rows_copied,
        "dead_dropped": rep.dead_dropped,
        "ivf": rep.ivf,
        "ivf_trained_on": rep.ivf_trained_on,
        "train_s": rep.train_s,
        "encoded": rep.encoded,
        "encode_s": rep.encode_s,
        "ivf_kept": rep.ivf_kept,
        "lists_rows": rep.lists_rows,
        "lists_s": rep.lists_s,
    }
    if as_json:
        print(dumps(d))
        return
    if not rep.merged:
        err.print(
            "nothing to merge: the vector segments are already few, in fp16, and hold no dead rows.", highlight=False
        )
    else:
        err.print(
            f"merged {rep.merged} segments into {rep.written}: {rep.rows_copied} vectors kept, "
            f"{rep.dead_dropped} dead rows dropped.",
            highlight=False,
        )
    if rep.ivf:
        err.print(
            f"trained the IVF index {rep.ivf} on {rep.ivf_trained_on:,} vectors in {rep.train_s} s; "
            f"encoded {rep.encoded:,} vectors in {rep.encode_s} s.",
            highlight=False,
        )
    elif rep.ivf_kept:
        err.print(
            f"queries rank candidates through the existing IVF index {rep.ivf_kept} (it fits the archive; "
            f"`--retrain` trains a new one)"
            + (f"; gave {rep.encoded:,} vectors their codes in {rep.encode_s} s." if rep.encoded else "."),
            highlight=False,
        )
    elif rep.encoded:
        err.print(f"gave {rep.encoded:,} vectors their IVF codes in {rep.encode_s} s.", highlight=False)
    if rep.lists_rows:
        err.print(
            f"wrote the IVF index's lists file ({rep.lists_rows:,} codes grouped by list, memory-mapped by "
            f"queries) in {rep.lists_s} s.",
            highlight=False,
        )
