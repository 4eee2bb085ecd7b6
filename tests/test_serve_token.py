"""Which token `archive serve` requires (``settings.serve_token``), and the gate's constant-time
comparison: no server, no model (the served routes: ``tests/test_server.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.server.auth import same, session_of
from indexer import settings
from indexer.errors import UsageError

GOOD = "a-token-of-twenty-four-c"


def test_loopback_needs_no_token_and_beyond_needs_one_or_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVE_TOKEN", raising=False)
    assert settings.serve_token(None, None, "127.0.0.1", False) is None
    with pytest.raises(UsageError, match="without a token"):
        settings.serve_token(None, None, "0.0.0.0", False)
    assert settings.serve_token(None, None, "0.0.0.0", True) is None
    assert settings.serve_token(GOOD, None, "0.0.0.0", False) == GOOD
    monkeypatch.setenv("ARCHIVE_TOKEN", f"  {GOOD}  ")
    assert settings.serve_token(None, None, "0.0.0.0", False) == GOOD
    with pytest.raises(UsageError, match="give one of them"):
        settings.serve_token(None, None, "0.0.0.0", True)  # --no-auth beside a token from the environment


def test_token_files_and_short_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVE_TOKEN", raising=False)
    f = tmp_path / "token"
    f.write_text(GOOD + "\nsecond line ignored\n")
    assert settings.serve_token(None, f, "0.0.0.0", False) == GOOD
    f.write_text("\n")
    with pytest.raises(UsageError, match="first line is empty"):
        settings.serve_token(None, f, "127.0.0.1", False)
    with pytest.raises(UsageError, match="cannot read it"):
        settings.serve_token(None, tmp_path / "missing", "127.0.0.1", False)
    with pytest.raises(UsageError, match="at least 16"):
        settings.serve_token("short", None, "127.0.0.1", False)
    with pytest.raises(UsageError, match="give one of them"):
        settings.serve_token(GOOD, f, "127.0.0.1", False)


def test_the_gate_compares_whole_tokens_and_the_cookie_is_not_the_token() -> None:
    assert same(GOOD, GOOD)
    assert not same(GOOD[:-1], GOOD) and not same(GOOD + "x", GOOD) and not same("", GOOD) and not same(None, GOOD)
    assert not same(GOOD.upper(), GOOD)
    s = session_of(GOOD)
    assert GOOD not in s and len(s) == 64 and s == session_of(GOOD) and s != session_of(GOOD + "x")
