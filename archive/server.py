"""`archive serve`: a local search page and a JSON API over one store, or several answering as one.

    GET  /                         the search page (``/?q=beach``)
    GET  /api/search?q=            the same result shape as ``archive search --json``
    POST /api/search/image         query by example: the request body is an image file
    GET  /api/videos               every indexed video, with its labels
    GET  /api/videos/{id}          one video: shots, label segments, text read, versions, failures
    GET  /api/thumbnails/{frame}   a sampled frame's JPEG (made at index time)
    GET  /api/media/{id}           the video file itself, with HTTP range requests
    GET  /api/stats                the archive's numbers and saved labels
    GET  /docs                     OpenAPI page

With several stores (``archive serve --store A --store B``), searches are merged as
:mod:`search.shards` merges them; every result, video row and stats entry carries ``store`` and
``store_index``, and the id routes take ``?store=K`` (the store's index, 0 by default), because
each store numbers its own videos and frames.

Only files listed in the catalog are ever served: paths come from the catalog, never from the
request. The model is loaded once at start. Video files are never decoded here: thumbnails and
timings come from the store.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer import settings
from indexer.errors import ArchiveError, QueryError, StoreError, StoreNotFound
from indexer.store import list_videos, ocr_lines, read_meta, read_thumbnail, store_info, video_detail, video_path
from search.labels import list_labels
from search.query import Searcher
from search.shards import ShardedSearcher

WEB = Path(__file__).resolve().parent / "web"
MAX_UPLOAD = 20 << 20  # bytes of an example image
MAX_PIXELS = 40_000_000  # ... and its pixels
ID = 2**63 - 1  # ids are BIGINT
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo", ".ts": "video/mp2t",
                ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".mxf": "application/mxf"}
# What a browser's <video> plays (the page offers the file for download otherwise).
_PLAYABLE = {"h264", "vp8", "vp9", "av1", "theora", "hevc"}


def create_app(store: str | os.PathLike[str] | list[str | os.PathLike[str]], device: str = settings.DEFAULT_DEVICE,
               searcher: Searcher | ShardedSearcher | None = None, host: str = settings.DEFAULT_HOST) -> Any:
    """The FastAPI application for ``store`` (a folder, or a list of folders that answer as one).
    The model loads on the first search (call :func:`warm` to load it now).

    Requests must name this machine as their Host (loopback names, or ``host``), so a web page
    elsewhere cannot reach the archive through DNS rebinding; listening on every address
    (0.0.0.0 or ::) accepts any Host.
    """
    from starlette.middleware.trustedhost import TrustedHostMiddleware  # noqa: PLC0415
    stores = [Path(x) for x in (store if isinstance(store, (list, tuple)) else [store])]
    several = len(stores) > 1
    s = searcher or (ShardedSearcher(stores, device) if several else Searcher(stores[0], device))
    per_store = s.searchers if isinstance(s, ShardedSearcher) else [s]
    index_of = {str(st): i for i, st in enumerate(stores)}
    lock = threading.Lock()  # one search at a time: the searcher's caches are not thread-safe
    by_id: dict[int, Any] = {}  # per store: its frame table's ids, sorted, for thumbnail lookups
    store_q = Query(0, ge=0, description="With several stores: which one the id belongs to (its store_index).")

    def store_dir(k: int) -> Path:
        if k >= len(stores):
            raise HTTPException(404, f"no store {k}: this server has {len(stores)} (see /api/stats).")
        return stores[k]

    def tagged(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        if several:
            for r in rows:
                r["store"], r["store_index"] = str(stores[k]), k
        return rows

    def result(res: Any, t0: float) -> dict[str, Any]:
        out = _result(res, t0)
        if several:
            for r in out["results"]:
                r["store_index"] = index_of.get(r.get("store", ""), 0)
        for k, st in enumerate(stores):  # the text read on screen in each segment, where there is text
            mine = [r for r in out["results"] if r.get("store_index", 0) == k and r["segments"]]
            if mine:
                _add_text_read(st, mine)
        return out
    app = FastAPI(
        title="Video archive",
        description="Search an indexed video collection by text or example image: per video, present / "
                    "first seen / time on screen / segments. Only indexed files are served.",
        version="1",
    )
    app.state.searcher = s
    if host not in ("0.0.0.0", "::", ""):
        app.add_middleware(TrustedHostMiddleware,
                           allowed_hosts=sorted({"localhost", "127.0.0.1", "[::1]", "::1", host, f"[{host}]"}))

    # -- errors: a status and one message, never a stack trace ---------------------------------
    @app.exception_handler(QueryError)
    async def _query_error(_: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreNotFound)
    async def _no_store(_: Request, exc: StoreNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(ArchiveError)
    async def _archive_error(_: Request, exc: ArchiveError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409 if isinstance(exc, StoreError) else 400)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("archive.serve").error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"}, status_code=500)

    # -- pages ------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    # -- search -----------------------------------------------------------------------------------
    @app.get("/api/search", summary="Search by text, or by words written on screen (ocr): the shape of `archive search --json`")
    def search(
        q: Optional[str] = Query(None, description="The text to search for, e.g. 'a beach'."),
        ocr: Optional[str] = Query(None, description="Instead of q: words written on screen, e.g. 'drink responsibly' "
                                                     "(a store indexed with --ocr)."),
        top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000, description="Videos to return, best first."),
        video: Optional[list[str]] = Query(None, description="Only these indexed files, folders or names."),
        threshold: Optional[float] = Query(None, ge=-1.0, le=1.0, description="A plain cosine cut instead of the rule."),
        merge_gap: float = Query(0.0, ge=0.0, description="Join segments at most this many seconds apart."),
        min_duration: float = Query(0.0, ge=0.0, description="Drop shorter segments (seconds)."),
    ) -> dict[str, Any]:
        if (q is None) == (ocr is None):
            raise QueryError("give q (a text to search for) or ocr (words written on screen), one of the two.")
        t0 = time.perf_counter()
        with lock:
            [res] = s.search([q] if q is not None else [], videos=video, top=top, threshold=threshold,
                             merge_gap_s=merge_gap, min_duration_s=min_duration, ocr=[ocr] if ocr is not None else [])
        return result(res, t0)

    @app.post(
        "/api/search/image",
        summary="Search by example image (the request body is the image file)",
        openapi_extra={"requestBody": {"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def search_image(
        request: Request,
        top: int = Query(settings.DEFAULT_TOP, ge=1, le=1000),
        video: Optional[list[str]] = Query(None),
        threshold: Optional[float] = Query(None, ge=-1.0, le=1.0),
        name: str = Query("upload", description="The image's file name, shown as the query."),
    ) -> dict[str, Any]:
        too_big = HTTPException(413, f"image too large: at most {MAX_UPLOAD >> 20} MB.")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise too_big
            chunks.append(chunk)
        body = b"".join(chunks)
        name = name.replace("\x00", "")[:200] or "upload"
        if not body:
            raise QueryError("no image in the request body: send the image file's bytes.")
        _check_image(body, name)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"  # the name is only shown, never used as a path
            path.write_bytes(body)
            t0 = time.perf_counter()

            def run() -> Any:
                with lock:
                    return s.search(images=[path], videos=video, top=top, threshold=threshold)

            [res] = await run_in_threadpool(run)
        res.query = f"image:{name}"
        return result(res, t0)

    # -- the catalog --------------------------------------------------------------------------------
    @app.get("/api/videos", summary="Every indexed video, with its saved labels")
    def videos() -> dict[str, Any]:
        rows = [r for k, st in enumerate(stores) for r in tagged([_jsonable(r) for r in list_videos(st)], k)]
        for r in rows:
            r["playable"] = _playable(r)
        return {"videos": rows}

    @app.get("/api/videos/{video_id}", summary="One video: its shots, label segments, text lines read, versions (shared footage) and any failure note")
    def video(video_id: int = Path_(..., ge=0, le=ID), store: int = store_q) -> dict[str, Any]:
        v = video_detail(store_dir(store), video_id)
        if v is None:
            raise HTTPException(404, f"no video with id {video_id}; see /api/videos.")
        v["failures"] = [_jsonable(f) for f in v["failures"]]
        v["playable"] = _playable(v)
        v["file_present"] = Path(v["path"]).is_file()
        return tagged([_jsonable(v)], store)[0]

    @app.get(
        "/api/thumbnails/{frame_id}", summary="A sampled frame's JPEG thumbnail", response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def thumbnail(frame_id: int = Path_(..., ge=0, le=ID), store: int = store_q) -> Response:
        folder = store_dir(store)
        with lock:  # offsets come from the searcher's frame table: no catalog open per picture
            table = per_store[store].frames(None)
            if by_id.get(store, (None,))[0] is not table:
                order = np.argsort(table.frame_id)
                by_id[store] = (table, (table.frame_id[order], order))
            ids = by_id[store][1]
        k = int(np.searchsorted(ids[0], frame_id))
        if k >= len(ids[0]) or ids[0][k] != frame_id:
            raise HTTPException(404, f"no frame with id {frame_id}.")
        i = ids[1][k]
        offset, length = int(table.thumb_offset[i]), int(table.thumb_bytes[i])
        if offset < 0 or length <= 0:
            raise HTTPException(404, f"frame {frame_id} has no thumbnail yet: run `archive index` on its folder again.")
        try:
            data = read_thumbnail(folder, offset, length)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get(
        "/api/media/{video_id}", summary="The indexed video file (supports HTTP range requests)",
        response_class=FileResponse, responses={200: {"content": {"video/*": {}}}, 206: {"description": "a byte range"}},
    )
    def media(video_id: int = Path_(..., ge=0, le=ID), store: int = store_q) -> FileResponse:
        found = video_path(store_dir(store), video_id)
        if found is None:
            raise HTTPException(404, f"no video with id {video_id}; see /api/videos.")
        path = Path(found)
        if not path.is_file():
            raise HTTPException(410, f"the indexed file is no longer at {path}; its timings are still searchable.")
        kind = _VIDEO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, filename=path.name, content_disposition_type="inline")

    @app.get("/api/stats", summary="The archive's numbers and its saved labels")
    def stats() -> dict[str, Any]:
        parts = []
        for k, st in enumerate(stores):
            info = store_info(st)
            labels = tagged([{"name": lab.name, **lab.to_dict()} for lab in list_labels(st)], k)
            parts.append({"store": str(st.resolve()), "videos": info.videos, "frames": info.frames,
                          "seconds": round(info.seconds, 3), "model": info.model, "pretrained": info.pretrained,
                          "dim": info.dim, "bytes": info.bytes, "failures": info.failures, "ocr": info.ocr,
                          "text_lines": info.text_lines, "labels": labels})
        if not several:
            return parts[0]
        out = {"store": os.pathsep.join(p["store"] for p in parts), "model": parts[0]["model"],
               "pretrained": parts[0]["pretrained"], "dim": parts[0]["dim"],
               "labels": [lab for p in parts for lab in p["labels"]]}
        for key in ("videos", "frames", "seconds", "bytes", "failures", "text_lines"):
            out[key] = sum(p[key] for p in parts)
        out["ocr"] = any(p["ocr"] for p in parts)
        out["seconds"] = round(out["seconds"], 3)
        out["stores"] = [{k: v for k, v in p.items() if k != "labels"} | {"store_index": i} for i, p in enumerate(parts)]
        return out

    return app


def warm(app: Any) -> None:
    """Load the model and the frame tables now, so the first search is as fast as the rest."""
    s = app.state.searcher
    for one in (s.searchers if isinstance(s, ShardedSearcher) else [s]):
        _ = one.encoder
        one.text_encoder.encode_texts(["a photo"])  # the tokenizer's tables too
        one.background_vectors()
        one.background_lse(one.scanner(None))


def _check_image(body: bytes, name: str) -> None:
    """Raise QueryError unless ``body`` is an image PIL can read."""
    import io  # noqa: PLC0415

    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(io.BytesIO(body)) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise QueryError(f"{name}: {im.size[0]}x{im.size[1]} is too large; use an image under "
                                 f"{MAX_PIXELS // 1_000_000} megapixels.")
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise QueryError(f"{name}: not a readable image; upload a PNG, JPEG or WebP file.") from exc


def _add_text_read(store: Path, results: list[dict[str, Any]]) -> None:
    """Give each segment of ``results`` (one store's) ``text_read``: the lines on screen during it."""
    if read_meta(store).get("ocr") != "1":
        return
    lines: dict[int, list[dict[str, Any]]] = {}
    for row in ocr_lines(store, sorted({r["video_id"] for r in results})):
        lines.setdefault(row["video_id"], []).append(row)
    for r in results:
        for seg in r["segments"]:
            seg["text_read"] = list(dict.fromkeys(
                ln["text"] for ln in lines.get(r["video_id"], [])
                if ln["start_s"] < seg["end_s"] and ln["end_s"] > seg["start_s"]))


def _result(res: Any, t0: float) -> dict[str, Any]:
    out = res.to_dict()
    out["videos_searched"] = res.videos_searched
    out["frames_searched"] = res.frames_searched
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt  # noqa: PLC0415

    return {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in d.items()}


def _playable(v: dict[str, Any]) -> bool:
    """Whether a browser's <video> is likely to play this file (H.264/VP9/AV1 in MP4/WebM/MOV)."""
    return str(v.get("codec") or "").lower() in _PLAYABLE and Path(v["path"]).suffix.lower() in {
        ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".ogv"}


def serve(store: str | os.PathLike[str] | list[str | os.PathLike[str]], host: str = settings.DEFAULT_HOST,
          port: int = settings.DEFAULT_PORT,
          device: str = settings.DEFAULT_DEVICE, ready: Any = None) -> None:
    """Run the server until Ctrl-C. ``ready(url)`` is called once it listens.

    Raises:
        StoreNotFound: no archive in ``store``.
        ArchiveError: the address cannot be bound (port in use, no such host).
    """
    import socket  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    settings.check_port(port)
    for one in (store if isinstance(store, (list, tuple)) else [store]):
        store_info(one)  # StoreNotFound before anything slow
    app = create_app(store, device, host=host)
    warm(app)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "already in use: pick another with --port" if exc.errno == 98 else (exc.strerror or str(exc))
        raise ArchiveError(f"cannot listen on {host}:{port}: {why}.") from exc
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if ready is not None:
        ready(f"http://{shown}:{bound}/")
    server.run(sockets=[sock])
