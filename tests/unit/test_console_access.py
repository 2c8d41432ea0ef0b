"""Console access without a database: users and their hashes, sign-in, the throttle, CSRF and
roles on the buttons (the app called in process, as an ASGI server would)."""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from services.console import auth
from services.console.app import create_app
from services.console.settings import ConsoleSettings
from services.console.users import UsersError, UserStore, add_user, check_password, parse_users

PASSWORDS = {"sup-ada": "ada-password-1", "view-vic": "vic-password-1"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "users.json"  # Argon2 hashes cost 0.3 s each
    add_user(path, "sup-ada", "supervisor", PASSWORDS["sup-ada"])
    add_user(path, "view-vic", "viewer", PASSWORDS["view-vic"])
    return path


def test_the_file_keeps_argon2_hashes_only_readable_by_its_owner(users_file: Path) -> None:
    text = users_file.read_text()
    assert PASSWORDS["sup-ada"] not in text and "$argon2id$" in text
    assert users_file.stat().st_mode & 0o777 == 0o600
    users = parse_users(text, "f")
    assert check_password(users["sup-ada"], PASSWORDS["sup-ada"])
    assert not check_password(users["sup-ada"], PASSWORDS["view-vic"])
    assert not check_password(None, "anything")


def test_a_clear_password_or_a_bad_role_in_the_file_is_refused() -> None:
    with pytest.raises(UsersError, match="password_hash"):
        parse_users(json.dumps({"users": [{"name": "a", "role": "admin",
                                           "password_hash": "hunter22"}]}), "f")
    with pytest.raises(UsersError, match="role"):
        parse_users(json.dumps({"users": [{"name": "a", "role": "root",
                                           "password_hash": "$argon2id$x"}]}), "f")
    with pytest.raises(UsersError, match="8 characters"):
        add_user(Path("/nonexistent/x.json"), "a", "viewer", "short")


def test_the_store_sees_a_changed_file_without_a_restart(users_file: Path,
                                                         tmp_path: Path) -> None:
    mine = tmp_path / "users.json"
    mine.write_text(users_file.read_text())
    store = UserStore(mine, check_every=0)
    assert store.get("sup-ada") is not None and store.get("new-nia") is None
    add_user(mine, "new-nia", "admin", "nia-password-1")
    found = store.get("new-nia")
    assert found is not None and found.at_least("supervisor")


def test_the_throttle_pauses_after_the_limit_until_the_window_moves_on() -> None:
    throttle = auth.Throttle(limit=3, window_seconds=60)
    keys = ["name:ada", "addr:1.2.3.4"]
    for t in (0.0, 1.0, 2.0):
        assert throttle.retry_after(keys, now=t) == 0
        throttle.failed(keys, now=t)
    assert throttle.retry_after(keys, now=3.0) == pytest.approx(57.0)
    assert throttle.retry_after(["name:other", "addr:1.2.3.4"], now=3.0) > 0  # same address
    assert throttle.retry_after(keys, now=61.0) == 0


def test_only_local_paths_after_sign_in() -> None:
    assert auth.safe_next("/escalations/e1") == "/escalations/e1"
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "", None):
        assert auth.safe_next(hostile) == "/"


# --- the app, in process --------------------------------------------------------------------------
class Browser:
    """Just enough of a client: cookies, forms, status, body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, form: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        body = urlencode(form or {}).encode()
        raw = [(b"host", b"console.test")]
        if self.cookies:
            raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                        .encode()))
        if form is not None:
            raw += [(b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        path_only, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": method, "scheme": "http", "path": path_only,
                 "raw_path": path_only.encode(), "query_string": query.encode(), "headers": raw,
                 "client": ("10.0.0.7", 5000), "server": ("console.test", 80), "root_path": "",
                 "state": {}}
        sent = [{"type": "http.request", "body": body, "more_body": False}]
        out: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return sent.pop(0) if sent else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in out if m["type"] == "http.response.start")
        response_headers: dict[str, str] = {}
        for k, v in start["headers"]:
            name = k.decode().lower()
            if name == "set-cookie":
                cookie: SimpleCookie = SimpleCookie()
                cookie.load(v.decode())
                for key, morsel in cookie.items():
                    self.cookies[key] = morsel.value
            response_headers[name] = v.decode()
        text = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
        return start["status"], response_headers, text.decode()

    async def csrf(self, path: str = "/login") -> str:
        _, _, html = await self.request("GET", path)
        found = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert found, html
        return found.group(1)

    async def sign_in(self, name: str) -> int:
        token = await self.csrf()
        status, _, _ = await self.request("POST", "/login", {
            "name": name, "password": PASSWORDS[name], "csrf_token": token, "next": "/sla"})
        return status


@pytest.fixture
def app(users_file: Path) -> Any:
    settings = ConsoleSettings(users_file=str(users_file), secret_key="test-secret-key")
    return create_app(settings, database_url="postgresql://unused", kafka_bootstrap="unused:1",
                      watch_kafka=False)


async def test_pages_need_a_sign_in(app: Any) -> None:
    status, headers, _ = await Browser(app).request("GET", "/escalations")
    assert status == 303 and headers["location"] == "/login?next=%2Fescalations"
    status, _, _ = await Browser(app).request("GET", "/live/sla")
    assert status == 401


async def test_sign_in_needs_the_forms_token_and_the_right_password(app: Any) -> None:
    browser = Browser(app)
    await browser.csrf()
    status, _, html = await browser.request("POST", "/login", {
        "name": "sup-ada", "password": PASSWORDS["sup-ada"], "csrf_token": "forged"})
    assert status == 403 and "expired" in html
    token = await browser.csrf()
    status, _, html = await browser.request("POST", "/login", {
        "name": "sup-ada", "password": "wrong-password", "csrf_token": token})
    assert status == 401 and "Wrong name or password" in html
    assert await browser.sign_in("sup-ada") == 303


async def test_sign_in_is_paused_after_five_failures(app: Any) -> None:
    browser = Browser(app)
    for _ in range(5):
        token = await browser.csrf()
        status, _, _ = await browser.request("POST", "/login", {
            "name": "sup-ada", "password": "wrong-password", "csrf_token": token})
        assert status == 401
    token = await browser.csrf()
    status, _, html = await browser.request("POST", "/login", {
        "name": "sup-ada", "password": PASSWORDS["sup-ada"], "csrf_token": token})
    assert status == 429 and "Too many failed sign-ins" in html


async def test_a_viewer_cannot_acknowledge_even_with_a_valid_token(app: Any) -> None:
    viewer = Browser(app)
    assert await viewer.sign_in("view-vic") == 303
    token = await viewer.csrf("/login")  # the same session's token
    status, _, html = await viewer.request("POST", "/escalations/esc-1/acknowledge",
                                           {"csrf_token": token})
    assert status == 403 and "A viewer cannot act on escalations" in html
    status, _, _ = await viewer.request("POST", "/escalations/esc-1/reassign",
                                        {"csrf_token": token, "to_skill": "billing"})
    assert status == 403


async def test_a_supervisor_post_without_the_token_or_from_another_site_is_refused(
        app: Any) -> None:
    supervisor = Browser(app)
    assert await supervisor.sign_in("sup-ada") == 303
    status, _, html = await supervisor.request("POST", "/escalations/esc-1/acknowledge", {})
    assert status == 403 and "security token" in html
    token = await supervisor.csrf("/login")
    status, _, _ = await supervisor.request(
        "POST", "/escalations/esc-1/acknowledge", {"csrf_token": token},
        headers={"origin": "https://evil.example"})
    assert status == 403


async def test_pages_forbid_inline_script_and_framing(app: Any) -> None:
    _, headers, _ = await Browser(app).request("GET", "/login")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
