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
    GET  /login, POST /login       with --token: the sign-in form (every other route needs the token)

With several stores (``archive serve --store A --store B``), searches are merged as
:mod:`search.shards` merges them; every result, video row and stats entry carries ``store`` and
``store_index``, and the id routes take ``?store=K`` (the store's index, 0 by default), because
each store numbers its own videos and frames.

Only files listed in the catalog are ever served: paths come from the catalog, never from the
request. The model is loaded once at start. Video files are never decoded here: thumbnails and
timings come from the store. The routes are in :mod:`.routes`, what they share in :mod:`.state`.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from indexer import settings
from indexer.errors import ArchiveError, QueryError, StoreError, StoreNotFound
from indexer.store import Reader
from search.query import Searcher
from search.shards import ShardedSearcher

from .auth import TokenGate
from .routes import WEB, router
from .state import ServerState


def create_app(
    store: str | os.PathLike[str] | list[str | os.PathLike[str]],
    device: str = settings.DEFAULT_DEVICE,
    searcher: Searcher | ShardedSearcher | None = None,
    host: str = settings.DEFAULT_HOST,
    token: str | None = None,
) -> Any:
    """The FastAPI application for ``store`` (a folder, or a list of folders that answer as one).
    The model loads on the first search (call :func:`warm` to load it now).

    Requests must name this machine as their Host (loopback names, or ``host``), so a web page
    elsewhere cannot reach the archive through DNS rebinding; listening on every address
    (0.0.0.0 or ::) accepts any Host. With ``token``, every route needs it (:mod:`.auth`).
    """
    stores = [Path(x) for x in (store if isinstance(store, (list, tuple)) else [store])]
    s = searcher or (ShardedSearcher(stores, device) if len(stores) > 1 else Searcher(stores[0], device))
    app = FastAPI(
        title="Video archive",
        description="Search an indexed video collection by text or example image: per video, present / "
        "first seen / time on screen / segments. Only indexed files are served.",
        version="1",
    )
    app.state.searcher = s
    app.state.archive = ServerState(stores, s)
    if host not in ("0.0.0.0", "::", ""):
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=sorted({"localhost", "127.0.0.1", "[::1]", "::1", host, f"[{host}]"})
        )
    if token:
        app.add_middleware(TokenGate, token=token)
    _error_handlers(app)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


def _error_handlers(app: FastAPI) -> None:
    """Errors become a status and one message, never a stack trace."""

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


def warm(app: Any) -> None:
    """Load the model and the frame tables now, so the first search is as fast as the rest."""
    s = app.state.searcher
    for one in s.searchers if isinstance(s, ShardedSearcher) else [s]:
        _ = one.encoder
        one.text_encoder.encode_texts(["a photo"])  # the tokenizer's tables too
        one.background_vectors()
        one.background_lse(one.scanner(None))


def serve(
    store: str | os.PathLike[str] | list[str | os.PathLike[str]],
    host: str = settings.DEFAULT_HOST,
    port: int = settings.DEFAULT_PORT,
    device: str = settings.DEFAULT_DEVICE,
    ready: Any = None,
    token: str | None = None,
) -> None:
    """Run the server until Ctrl-C. ``ready(url)`` is called once it listens. With ``token``, every
    route needs it (:mod:`.auth`).

    Raises:
        StoreNotFound: no archive in ``store``.
        ArchiveError: the address cannot be bound (port in use, no such host).
    """

    import uvicorn  # lazy: only `archive serve` needs the web server

    settings.check_port(port)
    for one in store if isinstance(store, (list, tuple)) else [store]:
        Reader(one).info()  # StoreNotFound before anything slow
    app = create_app(store, device, host=host, token=token)
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
