"""The routes of ``archive serve``: the page, searches, the catalog's rows, thumbnails and media.

Each route reads the server's :class:`~archive.server.state.ServerState` (a FastAPI dependency).
Only files listed in the catalog are ever served: paths come from the catalog, never from the
request; video files are never decoded here.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from indexer import settings
from indexer.errors import QueryError, StoreError
from indexer.store import Reader
from search.labels import list_labels

from .state import ServerState, check_image, current, jsonable, playable

WEB = Path(__file__).resolve().parent / "web"
MAX_UPLOAD = 20 << 20  # bytes of an example image
MAX_SOUND_UPLOAD = 64 << 20  # bytes of an example sound (a few minutes of compressed audio, or a short clip)
ID = 2**63 - 1  # ids are BIGINT
STORE_Q = Query(0, ge=0, description="With several stores: which one the id belongs to (its store_index).")
_VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ogv": "video/ogg",
    ".avi": "video/x-msvideo",
    ".ts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".mxf": "application/mxf",
}

router = APIRouter()


# -- pages ------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


# -- search -----------------------------------------------------------------------------------


@router.get(
    "/api/search",
    summary="Search by text, by words written on screen (ocr) or by words spoken (said): the shape of "
    "`archive search --json`",
)
def search(
    srv: Annotated[ServerState, Depends(current)],
    q: Optional[str] = Query(None, description="The text to search for, e.g. 'a beach'."),
    ocr: Optional[str] = Query(
        None,
        description="Instead of q: words written on screen, e.g. 'drink responsibly' (a store indexed with --ocr).",
    ),
    said: Optional[str] = Query(
        None,
        description="Instead of q: words spoken, e.g. 'just do it' (a store indexed with --speech).",
    ),
    top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000, description="Videos to return, best first."),
    video: Optional[list[str]] = Query(None, description="Only these indexed files, folders or names."),
    threshold: Optional[float] = Query(None, ge=-1.0, le=1.0, description="A plain cosine cut instead of the rule."),
    merge_gap: float = Query(0.0, ge=0.0, description="Join segments at most this many seconds apart."),
    min_duration: float = Query(0.0, ge=0.0, description="Drop shorter segments (seconds)."),
) -> dict[str, Any]:
    if sum(x is not None for x in (q, ocr, said)) != 1:
        raise QueryError(
            "give q (a text to search for), ocr (words written on screen) or said (words spoken), one of the three."
        )
    t0 = time.perf_counter()
    with srv.lock:
        [res] = srv.searcher.search(
            [q] if q is not None else [],
            videos=video,
            top=top,
            threshold=threshold,
            merge_gap_s=merge_gap,
            min_duration_s=min_duration,
            ocr=[ocr] if ocr is not None else [],
            said=[said] if said is not None else [],
        )
    return srv.result(res, t0)


@router.post(
    "/api/search/image",
    summary="Search by example image (the request body is the image file)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def search_image(
    request: Request,
    srv: Annotated[ServerState, Depends(current)],
    top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000),
    video: Optional[list[str]] = Query(None),
    threshold: Optional[float] = Query(None, ge=-1.0, le=1.0),
    name: str = Query("upload", description="The image's file name, shown as the query."),
) -> dict[str, Any]:
    body = await _body(request, MAX_UPLOAD, "image")
    name = name.replace("\x00", "")[:200] or "upload"
    if not body:
        raise QueryError("no image in the request body: send the image file's bytes.")
    check_image(body, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"  # the name is only shown, never used as a path
        path.write_bytes(body)
        t0 = time.perf_counter()

        def run() -> Any:
            with srv.lock:
                return srv.searcher.search(images=[path], videos=video, top=top, threshold=threshold)

        [res] = await run_in_threadpool(run)
    res.query = f"image:{name}"
    return srv.result(res, t0)


async def _body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (413) once it passes ``limit`` bytes, before it is read whole."""
    too_big = HTTPException(413, f"{what} too large: at most {limit >> 20} MB.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _one_store(srv: ServerState) -> Any:
    if srv.several:
        raise QueryError("searching by sound works on one store at a time: serve that store alone.")
    return srv.per_store[0]


@router.post(
    "/api/search/sound",
    summary="Search by example sound (the request body is a sound file, or a video file whose sound is the query)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def search_sound(
    request: Request,
    srv: Annotated[ServerState, Depends(current)],
    top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000),
    video: Optional[list[str]] = Query(None),
    name: str = Query("upload", description="The sound's file name, shown as the query."),
) -> dict[str, Any]:
    from archive.sound_query import query_from_file  # noqa: PLC0415  # PyAV: loaded when a sound is asked

    searcher = _one_store(srv)
    body = await _body(request, MAX_SOUND_UPLOAD, "sound")
    name = name.replace("\x00", "")[:200] or "upload"
    if not body:
        raise QueryError("no sound in the request body: send the sound file's bytes.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"  # the name is only shown, never used as a path
        path.write_bytes(body)
        t0 = time.perf_counter()

        def run() -> Any:
            q = query_from_file(path)
            q.label = f"sound:{name}"
            with srv.lock:
                return searcher.search(videos=video, top=top, sound=[q])

        try:
            [res] = await run_in_threadpool(run)
        except QueryError as exc:
            raise QueryError(str(exc).replace(f"--sound {path}", f"the sound {name}")) from None
    return srv.result(res, t0)


@router.get(
    "/api/search/sound",
    summary="Search by a stretch of an indexed video's sound (`archive search --sound-from VIDEO --at A-B`)",
)
def search_sound_from(
    srv: Annotated[ServerState, Depends(current)],
    video_id: int = Query(..., ge=0, le=ID, description="The indexed video the stretch is taken from."),
    at: str = Query(..., description="The stretch, START-END in seconds, e.g. 3.0-6.0."),
    top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000),
) -> dict[str, Any]:
    from search.sound import parse_at  # noqa: PLC0415

    searcher = _one_store(srv)
    a, b = parse_at(at)
    refs = Reader(srv.stores[0]).video_refs_of([video_id])
    if not refs:
        raise HTTPException(404, f"no video {video_id} in the archive.")
    t0 = time.perf_counter()
    with srv.lock:
        [res] = searcher.search(top=top, sound_from=[(refs[0].path, a, b)])
    return srv.result(res, t0)


# -- the catalog --------------------------------------------------------------------------------


@router.get("/api/videos", summary="Every indexed video, with its saved labels")
def videos(srv: Annotated[ServerState, Depends(current)]) -> dict[str, Any]:
    rows = [
        r for k, st in enumerate(srv.stores) for r in srv.tagged([jsonable(r) for r in Reader(st).list_videos()], k)
    ]
    for r in rows:
        r["playable"] = playable(r)
    return {"videos": rows}


@router.get(
    "/api/videos/{video_id}",
    summary="One video: its shots, label segments, text lines read, versions (shared footage) and any failure note",
)
def video(
    srv: Annotated[ServerState, Depends(current)], video_id: int = Path_(..., ge=0, le=ID), store: int = STORE_Q
) -> dict[str, Any]:
    v = Reader(srv.store_dir(store)).video_detail(video_id)
    if v is None:
        raise HTTPException(404, f"no video with id {video_id}; see /api/videos.")
    v["failures"] = [jsonable(f) for f in v["failures"]]
    v["playable"] = playable(v)
    v["file_present"] = Path(v["path"]).is_file()
    return srv.tagged([jsonable(v)], store)[0]


@router.get(
    "/api/videos/{video_id}/transcript",
    summary="What is said in one video: its spoken lines (times on the video's clock) and their words",
)
def transcript(
    srv: Annotated[ServerState, Depends(current)], video_id: int = Path_(..., ge=0, le=ID), store: int = STORE_Q
) -> dict[str, Any]:
    t = Reader(srv.store_dir(store)).transcript(video_id)
    if t is None:
        raise HTTPException(404, f"no video with id {video_id}; see /api/videos.")
    t["transcribed"] = t["speech_lines"] is not None
    return srv.tagged([t], store)[0]


@router.get(
    "/api/thumbnails/{frame_id}",
    summary="A sampled frame's JPEG thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def thumbnail(
    srv: Annotated[ServerState, Depends(current)], frame_id: int = Path_(..., ge=0, le=ID), store: int = STORE_Q
) -> Response:
    folder = srv.store_dir(store)
    found = srv.frame_position(store, frame_id)  # offsets come from the searcher's frame table: no catalog read
    if found is None:
        raise HTTPException(404, f"no frame with id {frame_id}.")
    table, i = found
    offset, length = int(table.thumb_offset[i]), int(table.thumb_bytes[i])
    if offset < 0 or length <= 0:
        raise HTTPException(404, f"frame {frame_id} has no thumbnail yet: run `archive index` on its folder again.")
    try:
        data = Reader(folder).thumbnail(offset, length)
    except StoreError as exc:
        raise HTTPException(503, str(exc)) from exc
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.get(
    "/api/media/{video_id}",
    summary="The indexed video file (supports HTTP range requests)",
    response_class=FileResponse,
    responses={200: {"content": {"video/*": {}}}, 206: {"description": "a byte range"}},
)
def media(
    srv: Annotated[ServerState, Depends(current)], video_id: int = Path_(..., ge=0, le=ID), store: int = STORE_Q
) -> FileResponse:
    found = Reader(srv.store_dir(store)).video_path(video_id)
    if found is None:
        raise HTTPException(404, f"no video with id {video_id}; see /api/videos.")
    path = Path(found)
    if not path.is_file():
        raise HTTPException(410, f"the indexed file is no longer at {path}; its timings are still searchable.")
    kind = _VIDEO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, filename=path.name, content_disposition_type="inline")


@router.get("/api/stats", summary="The archive's numbers and its saved labels")
def stats(srv: Annotated[ServerState, Depends(current)]) -> dict[str, Any]:
    parts = []
    for k, st in enumerate(srv.stores):
        info = Reader(st).info()
        labels = srv.tagged([{"name": lab.name, **lab.to_dict()} for lab in list_labels(st)], k)
        parts.append(
            {
                "store": str(st.resolve()),
                "videos": info.videos,
                "frames": info.frames,
                "seconds": round(info.seconds, 3),
                "model": info.model,
                "pretrained": info.pretrained,
                "dim": info.dim,
                "bytes": info.bytes,
                "failures": info.failures,
                "ocr": info.ocr,
                "text_lines": info.text_lines,
                "speech": info.speech or info.speech_videos > 0,
                "speech_lines": info.speech_lines,
                "speech_words": info.speech_words,
                "speech_videos": info.speech_videos,
                "sound_videos": info.sound_heard,
                "labels": labels,
            }
        )
    if not srv.several:
        return parts[0]
    out = {
        "store": os.pathsep.join(p["store"] for p in parts),
        "model": parts[0]["model"],
        "pretrained": parts[0]["pretrained"],
        "dim": parts[0]["dim"],
        "labels": [lab for p in parts for lab in p["labels"]],
    }
    for key in ("videos", "frames", "seconds", "bytes", "failures", "text_lines", "speech_lines", "speech_words"):
        out[key] = sum(p[key] for p in parts)
    out["speech_videos"] = sum(p["speech_videos"] for p in parts)
    out["sound_videos"] = 0  # searching by sound works on one store at a time
    out["ocr"] = any(p["ocr"] for p in parts)
    out["speech"] = any(p["speech"] for p in parts)
    out["seconds"] = round(out["seconds"], 3)
    out["stores"] = [{k: v for k, v in p.items() if k != "labels"} | {"store_index": i} for i, p in enumerate(parts)]
    return out
