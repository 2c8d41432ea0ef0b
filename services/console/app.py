"""The console's web application: pages, live fragments (server-sent events) and actions.

Every page is server-rendered (Jinja2, autoescaped). Its live part is a fragment that the page
renders once and `/live/<view>` streams again whenever it changes: the stream wakes when Kafka
says the view's area changed (live.Hub) or after `refresh_seconds`, re-reads PostgreSQL, and
sends the fragment if it differs. Renders are shared between the viewers of the same view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console import auth, views
from services.console.actions import Publisher
from services.console.live import AREAS, Hub, KafkaWatcher
from services.console.read import Reader
from services.console.safe_markdown import render as render_markdown
from services.console.settings import ConsoleSettings
from services.console.users import User, UserStore, check_password
from services.escalation.packet import render_markdown as packet_markdown
from services.router.policy import load_policy, load_taxonomy
from shared.channels import registry
from shared.contracts.case_events import WarmTransferPacket
from shared.settings import get_settings

log = logging.getLogger(__name__)
# A live stream ends after this; the browser reconnects (and the session is checked again).
STREAM_SECONDS = 300.0
LIVE_ESCALATION_STATES = ("open", "exhausted")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


class SecurityHeaders:
    """No inline script, no framing, no sniffing, no caching of pages with customer data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-frame-options", b"DENY"),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin")]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)


# --- views: what a page shows and its live fragment ------------------------------------------
@dataclass(frozen=True)
class View:
    name: str
    fragment: str
    params: Callable[[Request], dict[str, str]]
    load: Callable[[Console, dict[str, str], datetime], Awaitable[dict[str, Any]]]
    areas: tuple[str, ...]


def _page(request: Request) -> str:
    raw = request.query_params.get("page", "1")
    return str(max(1, min(int(raw), 100_000))) if raw.isdigit() else "1"


def _text(request: Request, name: str, limit: int = 128) -> str:
    return request.query_params.get(name, "").strip()[:limit]


async def _load_queues(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    return await c.reader.queues(now)


async def _load_queue(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    return await c.reader.queue_cases(p["queue"], int(p["page"]), now)


async def _load_agents(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    return await c.reader.agents(int(p["page"]), p["presence"] or None, p["q"] or None, p["sort"])


async def _load_sla(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    return await c.reader.sla(int(p["page"]), now)


async def _load_escalations(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    return await c.reader.escalations(int(p["page"]))


async def _load_escalation(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    found = await c.reader.escalation(p["id"])
    return {"found": found, "escalation_id": p["id"]}


async def _load_case(c: Console, p: dict[str, str], now: datetime) -> dict[str, Any]:
    rows = await c.reader.case_timeline(p["case_id"])
    broken = next((r for r in rows if r.status == "broken"), None)
    return {"case_id": p["case_id"], "rows": rows, "broken": broken,
            "case": await c.reader.case_state(p["case_id"])}


PRESENCES = ("available", "busy", "away", "offline")


def _agent_params(request: Request) -> dict[str, str]:
    presence, sort = _text(request, "presence"), _text(request, "sort")
    return {"page": _page(request), "presence": presence if presence in PRESENCES else "",
            "q": _text(request, "q", 64), "sort": sort if sort in Reader.AGENT_SORTS else "id"}


VIEWS: dict[str, View] = {v.name: v for v in (
    View("queues", "_queues.html", lambda r: {}, _load_queues, ("queues",)),
    View("queue", "_queue.html", lambda r: {"queue": _text(r, "queue"), "page": _page(r)},
         _load_queue, ("queues",)),
    View("agents", "_agents.html", lambda r: _agent_params(r), _load_agents, ("agents",)),
    View("sla", "_sla.html", lambda r: {"page": _page(r)}, _load_sla, ("sla",)),
    View("escalations", "_escalations.html", lambda r: {"page": _page(r)}, _load_escalations,
         ("escalations",)),
    View("escalation", "_escalation_status.html", lambda r: {"id": _text(r, "id")},
         _load_escalation, ("escalations",)),
    View("case", "_timeline.html", lambda r: {"case_id": _text(r, "case_id")}, _load_case, ()),
)}


@dataclass
class Rendered:
    versions: tuple[int, ...]
    at: float
    html: str


@dataclass
class Console:
    """Everything a request needs; `reader` and the Kafka parts exist once started."""

    settings: ConsoleSettings
    users: UserStore
    database_url: str
    kafka_bootstrap: str
    hub: Hub = field(default_factory=Hub)
    throttle: auth.Throttle = field(default_factory=lambda: auth.Throttle(5))
    pool: asyncpg.Pool | None = None
    publisher: Publisher | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _renders: OrderedDict[str, Rendered] = field(default_factory=OrderedDict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = get_settings()
        self.policy = load_policy(Path(s.router_policy_path) if s.router_policy_path else None)
        taxonomy = load_taxonomy(Path(s.router_taxonomy_path) if s.router_taxonomy_path
                                 else None)
        self.skills = sorted(taxonomy.skills)
        self.tiers = [t.tier for t in self.policy.authority_tiers]
        self.throttle = auth.Throttle(self.settings.max_failed_logins)
        self.env = Environment(loader=PackageLoader("services.console", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(duration=views.duration, clock=_clock, iso=_iso)
        self.env.globals.update(urlencode=urlencode, presences=PRESENCES,
                                channels=registry.names())

    @property
    def reader(self) -> Reader:
        if self.pool is None:
            raise RuntimeError("the console has not started")
        return Reader(self.pool, self.policy, page_size=self.settings.page_size,
                      throughput_window=timedelta(
                          minutes=self.settings.throughput_window_minutes),
                      sla_horizon=timedelta(minutes=self.settings.sla_horizon_minutes),
                      breached_window=timedelta(hours=self.settings.breached_window_hours))

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def fragment(self, view: View, params: dict[str, str], keys: tuple[str, ...]) -> str:
        """The view's fragment, shared by concurrent viewers of the same view and parameters
        while nothing it watches changed (and for at most a second: it shows times)."""
        key = f"{view.name}?{urlencode(sorted(params.items()))}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            versions = self.hub.snapshot(keys)
            cached = self._renders.get(key)
            if cached and cached.versions == versions and time.monotonic() - cached.at < 1.0:
                return cached.html
            now = datetime.now(UTC)
            data = await view.load(self, params, now)
            html = self.render(view.fragment, now=now, params=params, **data)
            self._renders[key] = Rendered(versions, time.monotonic(), html)
            self._renders.move_to_end(key)
            while len(self._renders) > 256:
                old, _ = self._renders.popitem(last=False)
                self._locks.pop(old, None)
            return html


def _clock(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


# --- request helpers --------------------------------------------------------------------------
def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def signed_in(request: Request) -> User | None:
    return auth.current_user(request, console(request).users)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


def flash(request: Request, kind: str, text: str) -> None:
    request.session.setdefault("flash", []).append([kind, text])


def page(request: Request, template: str, user: User | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    c = console(request)
    messages = request.session.pop("flash", [])
    html = c.render(template, user=user, csrf=auth.csrf_token(request), flashes=messages,
                    hub=c.hub, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


def forbidden(request: Request, user: User | None, why: str) -> HTMLResponse:
    return page(request, "error.html", user, status=403, title="Not allowed", message=why)


# --- pages ------------------------------------------------------------------------------------
async def login_form(request: Request) -> Response:
    return page(request, "login.html", None, title="Sign in",
                next=auth.safe_next(request.query_params.get("next")), error=None)


async def login(request: Request) -> Response:
    c = console(request)
    form = await request.form()
    name = str(form.get("name", ""))[:64]
    target = auth.safe_next(str(form.get("next", "/")))
    if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return page(request, "login.html", None, status=403, title="Sign in", next=target,
                    error="The form expired; please sign in again.")
    client = request.client.host if request.client else "unknown"
    keys = [f"name:{name.lower()}", f"addr:{client}"]
    wait = c.throttle.retry_after(keys)
    if wait > 0:
        return page(request, "login.html", None, status=429, title="Sign in", next=target,
                    error=f"Too many failed sign-ins; try again in {views.duration(wait)}.")
    user = c.users.get(name)
    # Argon2 takes tens of milliseconds of CPU: off the event loop.
    ok = await asyncio.to_thread(check_password, user, str(form.get("password", "")))
    if not ok or user is None:
        c.throttle.failed(keys)
        log.warning("failed sign-in for %r from %s", name, client)
        return page(request, "login.html", None, status=401, title="Sign in", next=target,
                    error="Wrong name or password.")
    c.throttle.succeeded(keys)
    auth.sign_in(request, user)
    log.info("%s (%s) signed in from %s", user.name, user.role, client)
    return RedirectResponse(target if target != "/" else "/queues", status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    return RedirectResponse("/queues", status_code=303)


def live_page(view_name: str, template: str, title: str,
              extra: Callable[[Request, dict[str, str]], dict[str, str]] | None = None,
              ) -> Callable[[Request], Awaitable[Response]]:
    """A page whose live part is the view's fragment: rendered now, then streamed."""
    view = VIEWS[view_name]

    async def endpoint(request: Request) -> Response:
        user = signed_in(request)
        if user is None:
            return to_login(request)
        c = console(request)
        params = view.params(request)
        if extra:
            params.update(extra(request, params))
        now = datetime.now(UTC)
        try:
            data = await view.load(c, params, now)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("page %s: %r", view_name, exc)
            return page(request, "error.html", user, status=503, title=title,
                        message=f"The database did not answer: {exc.__class__.__name__}.")
        live = f"/live/{view_name}?{urlencode(params)}"
        return page(request, template, user, title=title, live=live, params=params, now=now,
                    fragment=view.fragment, skills=c.skills, tiers=c.tiers, **data)

    return endpoint


async def case_lookup(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return to_login(request)
    case_id = _text(request, "case_id")
    if case_id:
        return RedirectResponse(f"/cases/{case_id}", status_code=303)
    return page(request, "case_lookup.html", user, title="Case timeline")


async def escalation_page(request: Request) -> Response:
    """The escalation's live status, its warm-transfer packet and the buttons."""
    user = signed_in(request)
    if user is None:
        return to_login(request)
    c = console(request)
    escalation_id = request.path_params["escalation_id"]
    params = {"id": escalation_id}
    now = datetime.now(UTC)
    data = await _load_escalation(c, params, now)
    found = data["found"]
    if found is None:
        return page(request, "error.html", user, status=404, title="Not found",
                    message="No such escalation.")
    packet_html = None
    if found["packet"] is not None:
        packet = WarmTransferPacket.model_validate(found["packet"])
        packet_html = render_markdown(packet_markdown(packet))
    title = f"Escalation of {found['escalation']['case_id']}"
    return page(request, "escalation.html", user, title=title,
                live=f"/live/escalation?{urlencode(params)}", params=params, now=now,
                packet_html=packet_html, skills=c.skills, tiers=c.tiers, **data)


async def case_page(request: Request) -> Response:
    case_id = request.path_params["case_id"][:128]

    def extra(r: Request, p: dict[str, str]) -> dict[str, str]:
        return {"case_id": case_id}
    return await live_page("case", "case.html", f"Case {case_id}", extra)(request)


async def queue_page(request: Request) -> Response:
    queue = request.path_params["queue"][:128]

    def extra(r: Request, p: dict[str, str]) -> dict[str, str]:
        return {"queue": queue}
    return await live_page("queue", "queue.html", f"Queue {queue}", extra)(request)


async def admin_page(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return to_login(request)
    if not user.at_least("admin"):
        return forbidden(request, user, f"Only admins see this page; you are a {user.role}.")
    c = console(request)
    return page(request, "admin.html", user, title="Console", users=c.users.all(),
                recent=list(c.hub.recent), now=datetime.now(UTC),
                publisher_ready=bool(c.publisher and c.publisher.started))


async def healthz(request: Request) -> Response:
    c = console(request)
    database = False
    if c.pool is not None:
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            async with asyncio.timeout(2):
                database = await c.pool.fetchval("SELECT true")
    return JSONResponse({"database": database, "kafka": c.hub.connected},
                        status_code=200 if database else 503)


# --- live -------------------------------------------------------------------------------------
def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n"


async def live(request: Request) -> Response:
    user = signed_in(request)
    if user is None:
        return Response("sign in first", status_code=401)
    view = VIEWS.get(request.path_params["view"])
    if view is None:
        return Response("no such view", status_code=404)
    c = console(request)
    params = view.params(request)
    name = user.name

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_SECONDS
        yield "retry: 2000\n\n"
        with contextlib.ExitStack() as stack:
            keys = view.areas
            if view.name == "case":
                keys = (stack.enter_context(c.hub.watching_case(params["case_id"])),)
            last: str | None = None
            while loop.time() < ends and c.users.get(name) is not None:
                seen = c.hub.snapshot(keys)
                html: str | None
                try:
                    html = await c.fragment(view, params, keys)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("live %s: %r", view.name, exc)
                    yield _sse("trouble", f"the database did not answer ({exc.__class__.__name__})")
                    html = last
                if html != last and html is not None:
                    yield _sse("fragment", html)
                    last = html
                else:
                    yield ": idle\n\n"
                await c.hub.wait(keys, seen, c.settings.refresh_seconds)
                await asyncio.sleep(c.settings.min_refresh_seconds)  # pace bursts of events

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


# --- actions ----------------------------------------------------------------------------------
@dataclass
class Action:
    """A button press that may go ahead: who, the form, the escalation, the publisher."""

    user: User
    form: Any
    found: dict[str, Any]
    publisher: Publisher
    back: RedirectResponse


async def _action(request: Request) -> Action | Response:
    """The signed-in supervisor (or admin) behind a valid CSRF token, acting on an escalation
    that exists while Kafka is reachable; else the refusal."""
    user = signed_in(request)
    if user is None:
        return to_login(request)
    form = await request.form()
    if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
        log.warning("refused a %s by %s: CSRF token or origin wrong", request.url.path, user.name)
        return forbidden(request, user, "The form's security token did not match; reload the "
                                        "page and try again.")
    if not user.at_least("supervisor"):
        log.warning("refused a %s by %s: role %s", request.url.path, user.name, user.role)
        return forbidden(request, user, f"A {user.role} cannot act on escalations; a supervisor "
                                        "or admin can.")
    c = console(request)
    escalation_id = request.path_params["escalation_id"]
    found = await c.reader.escalation(escalation_id)
    if found is None:
        return page(request, "error.html", user, status=404, title="Not found",
                    message="No such escalation.")
    back = RedirectResponse(f"/escalations/{escalation_id}", status_code=303)
    if c.publisher is None or not c.publisher.started:
        flash(request, "error", "Kafka is not reachable; nothing was sent. Try again shortly.")
        return back
    return Action(user, form, found, c.publisher, back)


async def acknowledge(request: Request) -> Response:
    act = await _action(request)
    if not isinstance(act, Action):
        return act
    esc = act.found["escalation"]
    if esc["state"] not in LIVE_ESCALATION_STATES:
        flash(request, "info", f"Nothing sent: the escalation is already {esc['state']}.")
        return act.back
    await act.publisher.acknowledge(esc["case_id"], esc["escalation_id"], act.user.name)
    flash(request, "ok", f"Acknowledgement sent as {act.user.name}; the escalation service "
                         "records it in the case log.")
    return act.back


async def reassign(request: Request) -> Response:
    act = await _action(request)
    if not isinstance(act, Action):
        return act
    c = console(request)
    skill = str(act.form.get("to_skill", ""))
    tier_text = str(act.form.get("min_tier", ""))
    note = str(act.form.get("reason", "")).strip()[:500]
    if skill not in c.skills or (tier_text and (not tier_text.isdigit()
                                                or int(tier_text) not in c.tiers)):
        flash(request, "error", "Choose a skill and a tier from the lists.")
        return act.back
    case = act.found["case"]
    if case is None or case["state"] == "solved":
        flash(request, "info", "Nothing sent: the router has no open case to reassign.")
        return act.back
    esc = act.found["escalation"]
    reason = (f"reassigned in the console by {act.user.name} (escalation "
              f"{esc['escalation_id']})" + (f": {note}" if note else ""))
    await act.publisher.transfer(esc["case_id"], act.user.name, skill,
                                 int(tier_text) if tier_text else None, reason)
    flash(request, "ok", f"Reassignment to {skill}" + (f", tier {tier_text}" if tier_text else "")
          + f" sent as {act.user.name}; the router queues the case again.")
    return act.back


# --- the application --------------------------------------------------------------------------
async def _start_publisher(c: Console) -> None:
    """Connect the producer, retrying while Kafka is not up yet (pages work without it)."""
    backoff = 1.0
    while True:
        publisher = Publisher(c.kafka_bootstrap, c.settings.event_source)
        try:
            await publisher.start()
        except Exception as exc:  # any failure to connect: retry
            log.warning("Kafka producer: %r; again in %.0f s", exc, backoff)
            with contextlib.suppress(Exception):
                await publisher.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        c.publisher = publisher
        return


async def _connect(c: Console) -> asyncpg.Pool:
    backoff = 0.5
    for _attempt in range(12):
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                c.database_url, min_size=1, max_size=c.settings.database_pool_size,
                # Read-only transactions: the console cannot write a row even by mistake.
                server_settings={"default_transaction_read_only": "on",
                                 "statement_timeout": "10000",
                                 "application_name": "switchboard-console"})
            return pool
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("PostgreSQL: %r; again in %.1f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    raise RuntimeError("PostgreSQL did not answer")


def create_app(settings: ConsoleSettings, *, database_url: str | None = None,
               kafka_bootstrap: str | None = None, users: UserStore | None = None,
               watch_kafka: bool = True) -> Starlette:
    shared = get_settings()
    c = Console(settings=settings,
                users=users or UserStore(settings.users_path(), settings.users),
                database_url=database_url or shared.database_url,
                kafka_bootstrap=kafka_bootstrap or shared.kafka_bootstrap_servers)
    if not c.users.all():
        log.warning("no console users: add one with `python -m services.console user add NAME "
                    "--role supervisor` (file %s)", settings.users_path())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        c.pool = await _connect(c)
        if watch_kafka:
            c.tasks.append(asyncio.create_task(KafkaWatcher(c.kafka_bootstrap, c.hub).run()))
            c.tasks.append(asyncio.create_task(_start_publisher(c)))
        try:
            yield
        finally:
            for task in c.tasks:
                task.cancel()
            await asyncio.gather(*c.tasks, return_exceptions=True)
            if c.publisher is not None:
                await c.publisher.stop()
            await c.pool.close()

    secret = settings.secret_key or secrets.token_urlsafe(32)
    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/queues", live_page("queues", "queues.html", "Queues")),
        Route("/queues/{queue}", queue_page),
        Route("/agents", live_page("agents", "agents.html", "Agents")),
        Route("/sla", live_page("sla", "sla.html", "SLA risk")),
        Route("/escalations", live_page("escalations", "escalations.html", "Escalations")),
        Route("/escalations/{escalation_id}", escalation_page),
        Route("/escalations/{escalation_id}/acknowledge", acknowledge, methods=["POST"]),
        Route("/escalations/{escalation_id}/reassign", reassign, methods=["POST"]),
        Route("/cases", case_lookup),
        Route("/cases/{case_id}", case_page),
        Route("/admin", admin_page),
        Route("/live/{view}", live),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(packages=[("services.console", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, max_body_size=65_536, middleware=[
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie="switchboard_console",
                   max_age=int(settings.session_hours * 3600), same_site="strict",
                   https_only=settings.secure_cookies),
    ])
    app.state.console = c
    return app


__all__ = ["AREAS", "create_app"]
