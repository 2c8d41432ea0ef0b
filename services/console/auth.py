"""Sessions, CSRF tokens and the sign-in throttle.

The session is Starlette's signed cookie (itsdangerous): the user's name, a CSRF token and when
they signed in; the role is looked up in the user store on every request, so a changed role or a
removed user counts at once. Every POST carries the session's CSRF token in a hidden field
(compared in constant time) and, when the browser sends one, an Origin of this console.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from urllib.parse import urlsplit

from starlette.requests import Request

from services.console.users import User, UserStore

CSRF_FIELD = "csrf_token"


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (the sign-in form has one before anyone signs in)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        return False
    return same_origin(request)


def same_origin(request: Request) -> bool:
    """A request whose Origin (or, lacking it, Referer) names another site is refused."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return claimed is None
    parts = urlsplit(claimed)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


def sign_in(request: Request, user: User) -> None:
    """A fresh session (no fixation): new CSRF token, the user's name, the time."""
    request.session.clear()
    request.session["user"] = user.name
    request.session["since"] = int(time.time())
    request.session["csrf"] = secrets.token_urlsafe(32)


def current_user(request: Request, store: UserStore) -> User | None:
    name = request.session.get("user")
    return store.get(name) if isinstance(name, str) else None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class Throttle:
    """Failed sign-ins per key (user name, client address) in a sliding window: after `limit`
    failures further attempts are refused until the oldest failure leaves the window."""

    def __init__(self, limit: int, window_seconds: float = 900.0) -> None:
        self.limit = limit
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return deque()
        return times

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until a key under the limit again; 0 when none is over it."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.limit:
                wait = max(wait, self.window - (now - times[0]))
        return wait

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures[key].append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
