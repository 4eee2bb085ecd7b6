"""Access control for ``archive serve --token``: one shared token on every route.

A request is let in when it carries the token:

* as ``Authorization: Bearer TOKEN`` (scripts, ``curl``, other services), or
* as the ``archive_token`` cookie, HttpOnly and SameSite=Strict, which the page sets after asking
  for the token once (``POST /login`` with a form field ``token``; ``POST /logout`` clears it). The
  cookie holds a value derived from the token (HMAC-SHA256), not the token itself.

Every other request gets a 401 with one line, and a browser asking for the page gets the sign-in
form instead. The token is compared in constant time (:func:`hmac.compare_digest`) and never
logged or echoed. A token in the query string (``?token=``, ``?access_token=``) is refused even
when right: URLs end up in logs, histories and Referer headers.

This is an ASGI middleware around the whole application, so nothing is reachable without the
token: the API, ``/api/media`` (the video files), ``/static``, ``/docs`` and ``/openapi.json``.
Only ``/login`` (the form and its post) answers without it. Put the server behind a reverse proxy
with TLS when it listens beyond this machine: the token and the cookie cross the network with
every request (docs: Serving a team).
"""

from __future__ import annotations

import hashlib
import hmac
import html
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

COOKIE = "archive_token"
LOGIN = "/login"
LOGOUT = "/logout"
MAX_FORM = 4096  # bytes of the sign-in form's body
IN_QUERY = ("token", "access_token", "archive_token")
NEEDS = "this archive needs a token: send 'Authorization: Bearer TOKEN', or sign in on the page."

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def same(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token, in time that does not depend on where they differ."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def session_of(token: str) -> str:
    """The cookie's value for ``token``: derived from it, so the browser never stores the token."""
    return hmac.new(token.encode("utf-8"), b"archive serve session", hashlib.sha256).hexdigest()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font:16px system-ui,sans-serif;max-width:28rem;margin:12vh auto;padding:0 1rem}"
        "input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.5rem 0}"
        "button{font:inherit;padding:.4rem 1rem}.err{color:#b00}</style></head><body>" + body + "</body></html>"
    ).encode()


def sign_in_page(error: str = "") -> bytes:
    """The form that asks for the token once (it posts to :data:`LOGIN`)."""
    err = f"<p class='err' id='auth-error'>{html.escape(error)}</p>" if error else ""
    return _page(
        "Sign in: video archive",
        "<h1>Video archive</h1><p>This archive is shared with a token. Ask whoever runs it.</p>"
        + err
        + f"<form method='post' action='{LOGIN}'><label for='token'>Token</label>"
        "<input id='token' name='token' type='password' autocomplete='current-password' required autofocus>"
        "<button type='submit'>Sign in</button></form>",
    )


class TokenGate:
    """The ASGI middleware: ``app`` is reached only with ``token`` (see the module docstring)."""

    def __init__(self, app: Any, token: str) -> None:
        if not token:
            raise ValueError("an empty token")
        self.app = app
        self.token = token
        self.session = session_of(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (websockets are not served)
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(k in query for k in IN_QUERY):
            await self._json(send, 400, "a token in the URL is refused (URLs are logged): send it as a header.")
            return
        if path == LOGIN:
            await self._login(scope, receive, send)
            return
        if path == LOGOUT and scope.get("method") == "POST":
            await self._redirect(send, "/", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            return
        h = _headers(scope)
        scheme, _, given = h.get("authorization", "").partition(" ")
        if (scheme.lower() == "bearer" and same(given.strip(), self.token)) or same(
            _cookie(h.get("cookie", ""), COOKIE), self.session
        ):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "GET" and path == "/" and "text/html" in h.get("accept", ""):
            await self._html(send, 401, sign_in_page())
            return
        await self._json(send, 401, NEEDS, [(b"www-authenticate", b'Bearer realm="archive"')])

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await self._html(send, 200, sign_in_page())
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > MAX_FORM:
                await self._json(send, 413, "the sign-in form is too large.")
                return
            if not msg.get("more_body"):
                break
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not same(given, self.token):
            await self._html(send, 401, sign_in_page("That is not the token."))
            return
        cookie = f"{COOKIE}={self.session}; Path=/; HttpOnly; SameSite=Strict"
        await self._redirect(send, "/", cookie)

    @staticmethod
    async def _html(send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _json(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        body = ('{"detail": "' + detail.replace("\\", "\\\\").replace('"', '\\"') + '"}').encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _redirect(send: Send, to: str, cookie: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", to.encode()),
                    (b"set-cookie", cookie.encode("utf-8")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
