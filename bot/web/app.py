"""aiohttp application factory: the chat page, the chat gateway and health.

The browser only ever talks to this service. It owns the conversation id (a
signed cookie), refuses bad messages before they reach Rasa, and turns
Rasa's failures (an error, an empty reply, a hang) into a visible message
with crisis numbers. When Rasa cannot answer, or a conversation sends too
fast, or the service is full, the message is still checked for a crisis
here, and the fixed crisis wording from domain.yml is shown if it is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections import deque
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from bot import chat_sessions, crisis, outbox, resume, retention, transcripts
from bot.config import MAX_MESSAGE_CHARS, ServiceConfig, Settings
from bot.crisis import policy
from bot.haproxy import ROUTING_HEADER, routing_key
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork
from bot.web import desk, messages, session
from bot.web import staff as staff_api
from bot.web.limits import AttemptLimit, client_address

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
OPENAPI = Path(__file__).with_name("openapi.yml")
SETTINGS = web.AppKey("settings", Settings)
SECRET = web.AppKey("secret", bytes)
SERVICE = web.AppKey("service", ServiceConfig)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
LIMITS = web.AppKey("limits", "Limits")
TOKEN = web.AppKey("gateway_token", str)
START_MESSAGE = "/greet"  # only the gateway may send an intent
# A reload of a conversation already open: the current question again. No
# slot mapping takes this intent, so nothing is stored as an answer.
SHOW_QUESTION_MESSAGE = "/show_question"
RESUME_MESSAGE = "/resume_conversation"
GATEWAY_TOKEN_HEADER = "X-Gateway-Token"
RESUME_THROTTLE = web.AppKey("resume_throttle", AttemptLimit)
# Wrong pause codes allowed in 15 minutes: from one address, and from all
# addresses together (a code opens a whole transcript, so guessing must not pay).
RESUME_TRIES_PER_ADDRESS = 10
RESUME_TRIES_IN_ALL = 200
OUTBOX_FLUSH_EVERY = 60.0


class Limits:
    """How much the gateway lets through.

    - A conversation may send ``per_conversation`` messages in ``window``
      seconds; people type far slower, so only a script or a stuck key hits it.
    - At most ``in_flight`` turns wait on Rasa at once. Past that, a turn waits
      ``queue_wait`` seconds for room, then gets "We're busy" instead of hanging.
    Both are per web process (the production profile runs one).
    """

    def __init__(self, per_conversation: int = 30, window: float = 60.0, in_flight: int = 32, queue_wait=0.5):
        self.per_conversation, self.window, self.queue_wait = per_conversation, window, queue_wait
        self.in_flight = asyncio.Semaphore(in_flight)
        self._recent: dict[str, deque[float]] = {}

    def allow(self, conversation_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        recent = self._recent.setdefault(conversation_id, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.per_conversation:
            return False
        recent.append(now)
        if len(self._recent) > 10_000:  # forget quiet conversations
            for key in [k for k, v in self._recent.items() if not v or v[-1] <= now - self.window]:
                del self._recent[key]
        return True


def create_app(settings: Settings, limits: Limits | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[security_headers, same_origin])
    app[SETTINGS] = settings
    app[SECRET] = settings.session_secret()
    app[SERVICE] = settings.service_config()
    app[TOKEN] = settings.gateway_token()
    app[LIMITS] = limits or Limits(per_conversation=settings.chat_messages_per_minute)
    app[staff_api.THROTTLE] = staff_api.SignInThrottle()
    app[RESUME_THROTTLE] = AttemptLimit(
        per_address=RESUME_TRIES_PER_ADDRESS, in_all=RESUME_TRIES_IN_ALL
    )
    app.cleanup_ctx.append(_client_session)
    app.cleanup_ctx.append(_purge_transcripts)
    app.add_routes(
        [
            web.get("/", index),
            web.get("/healthz", health),
            web.get("/api/openapi.json", openapi),
            web.get("/api/help-now", help_now),
            web.post("/api/chat/start", chat_start),
            web.post("/api/chat/restart", chat_restart),
            web.post("/api/chat/forget", chat_forget),
            web.post("/api/chat/resume", chat_resume),
            web.post("/api/chat", chat_message),
            web.static("/static", STATIC, append_version=False),
        ]
    )
    app.add_routes(staff_api.routes(SETTINGS, SERVICE))
    app.add_routes(desk.routes(SETTINGS, SECRET, SERVICE))
    return app


async def _client_session(app: web.Application):
    timeout = aiohttp.ClientTimeout(total=app[SETTINGS].rasa_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        app[CLIENT] = client
        yield


async def _purge_transcripts(app: web.Application):
    """Purge chat transcripts past their retention now and every PURGE_EVERY seconds."""
    settings = app[SETTINGS]

    async def loop():
        while True:
            try:
                await asyncio.to_thread(
                    retention.purge,
                    UnitOfWork(settings.database_url),
                    settings.tracker_url,
                    settings.retention(),
                )
            except Exception as err:  # noqa: BLE001 - keep purging later; the type alone is logged
                log.error("transcript purge failed: %s", type(err).__name__)
            await asyncio.sleep(retention.PURGE_EVERY)

    async def flush_outbox():
        while True:
            try:
                await asyncio.to_thread(outbox.flush, UnitOfWork(settings.database_url), settings.var_dir)
            except Exception as err:  # noqa: BLE001 - try again later; the type alone is logged
                log.error("crisis outbox flush failed: %s", type(err).__name__)
            await asyncio.sleep(OUTBOX_FLUSH_EVERY)

    tasks = [asyncio.create_task(loop()), asyncio.create_task(flush_outbox())]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@web.middleware
async def same_origin(request: web.Request, handler):
    """A write from another site's page is refused (there is no CORS: the chat
    and the desk are served from this origin, or PUBLIC_ORIGIN behind a proxy)."""
    origin = request.headers.get("Origin")
    # "null" is what a browser sends for a form posted under Referrer-Policy:
    # no-referrer, our own desk's included; the SameSite=Strict cookies and the
    # desk's form tokens cover those writes.
    if request.method not in ("GET", "HEAD", "OPTIONS") and origin not in (None, "null"):
        allowed = {f"{request.scheme}://{request.host}", request.app[SETTINGS].public_origin}
        if origin not in allowed:
            log.info("cross-origin write refused")
            return web.json_response({"error": "cross_origin"}, status=403)
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler):
    """Every answer, errors such as an unknown path's 404 included, gets the headers."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        _secure(request, error)
        raise
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(("/api/", "/staff")) or request.path == "/":
        response.headers["Cache-Control"] = "no-store"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def openapi(request: web.Request) -> web.Response:
    """The API description (bot/web/openapi.yml), kept in step by tests/test_openapi.py."""
    return web.json_response(yaml.safe_load(OPENAPI.read_text()))


async def help_now(request: web.Request) -> web.Response:
    """The "Get help now" panel: emergency and the national crisis line for
    this service's country, then the local crisis line from the configuration."""
    from bot.crisis import directory

    config = request.app[SERVICE]
    # Emergency first, then the national crisis line: the first two for
    # imminent danger in the directory. Fewer choices are easier in a crisis.
    shown = directory.load(profile=config.postal_format).resources("imminent")[:2]
    shown.append({"name": "Local crisis team", "call": config.local_crisis_line, "text": None})
    return web.json_response({"resources": shown})


async def health(request: web.Request) -> web.Response:
    """200 when Rasa and the action server answer; 503 "degraded" naming what does not."""
    status = await _parts_reachable(request.app)
    healthy = all(status.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "web": True, **status}, status=200 if healthy else 503
    )


async def _parts_reachable(app: web.Application) -> dict[str, bool]:
    settings, client = app[SETTINGS], app[CLIENT]
    urls = [f"{url}/webhooks/gateway/" for url in settings.rasa_urls] + [f"{settings.action_url}/health"]
    results = await asyncio.gather(*(_reachable(client, url) for url in urls))
    return {"rasa": all(results[:-1]), "actions": results[-1]}  # rasa: every forked server


async def _reachable(client: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with client.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
            return response.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


def _conversation(request: web.Request) -> str | None:
    return session.decode(request.app[SECRET], request.cookies.get(session.COOKIE_NAME))


def _with_cookie(request: web.Request, response: web.Response, conversation_id: str) -> None:
    response.set_cookie(
        session.COOKIE_NAME,
        session.encode(request.app[SECRET], conversation_id),
        max_age=int(request.app[SETTINGS].chat_idle_minutes * 60),
        httponly=True,
        samesite="Strict",
        secure=staff_api.secure(request, request.app[SETTINGS]),
        path="/",
    )


async def chat_start(request: web.Request) -> web.Response:
    """Open (or reopen) this browser's conversation and return the greeting."""
    conversation_id, ended = await _live_conversation(request)
    if conversation_id is None:
        return await _start_new(request, notice=ended)
    response = await _relay(request, conversation_id, SHOW_QUESTION_MESSAGE)
    _with_cookie(request, response, conversation_id)  # the session's Max-Age starts again
    return response


async def chat_restart(request: web.Request) -> web.Response:
    """ "Start again": the old conversation's session ends, and a new one starts."""
    await _end_session(request)
    return await _start_new(request)


async def chat_forget(request: web.Request) -> web.Response:
    """ "Leave this site" (a beacon as the page goes): the session ends here,
    so the cookie opens nothing even if it is kept; the pause code still works."""
    await _end_session(request)
    response = web.Response(status=204)
    response.del_cookie(session.COOKIE_NAME, path="/")
    return response


async def _end_session(request: web.Request) -> None:
    conversation_id = _conversation(request)
    if conversation_id is None:
        return
    try:
        await asyncio.to_thread(
            chat_sessions.end, UnitOfWork(request.app[SETTINGS].database_url), conversation_id
        )
    except StoreUnavailable as err:
        log.error("chat session not ended: the referral store is unavailable (%s)", type(err).__name__)


async def _live_conversation(request: web.Request) -> tuple[str | None, bool]:
    """This browser's conversation while its session is live; else (None, ended).

    ``ended`` is true when a cookie came for a session that ended (left,
    started again, or idle too long): the new chat then says why it is new.
    If the store cannot say, the chat carries on: help must never wait on this.
    """
    conversation_id = _conversation(request)
    if conversation_id is None:
        return None, False
    settings = request.app[SETTINGS]
    try:
        state = await asyncio.to_thread(
            chat_sessions.check,
            UnitOfWork(settings.database_url),
            conversation_id,
            dt.timedelta(minutes=settings.chat_idle_minutes),
        )
    except StoreUnavailable as err:
        log.error("chat session not checked: the referral store is unavailable (%s)", type(err).__name__)
        return conversation_id, False
    if state == chat_sessions.LIVE:
        return conversation_id, False
    log.info("chat session %s: a new conversation starts", state)
    return None, True


async def _start_new(request: web.Request, text: str = START_MESSAGE, notice: bool = False) -> web.Response:
    conversation_id = session.new_conversation_id()
    try:
        await asyncio.to_thread(
            chat_sessions.start, UnitOfWork(request.app[SETTINGS].database_url), conversation_id
        )
    except StoreUnavailable as err:
        log.error("chat session not stored: the referral store is unavailable (%s)", type(err).__name__)
    response = await _relay(request, conversation_id, text)
    if notice:
        # Why this chat is new: the last one ended (left, or idle), to keep it private.
        body = json.loads(response.body)
        body["messages"] = [
            messages.message("utter_session_ended", request.app[SERVICE].postal_format),
            *body.get("messages", []),
        ]
        response = web.json_response(body, status=response.status, headers=_cookie_free(response))
    _with_cookie(request, response, conversation_id)
    return response


def _cookie_free(response: web.Response) -> dict[str, str]:
    return {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-type", "content-length", "set-cookie")
    }


async def chat_resume(request: web.Request) -> web.Response:
    """Bring back a paused conversation from its pause code."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    throttle = request.app[RESUME_THROTTLE]
    address = client_address(request, request.app[SETTINGS].trusted_proxies)
    wait = throttle.wait(address)
    if wait > 0:
        log.warning("pause code refused: too many wrong codes")
        text = messages.message("utter_resume_code_limit", request.app[SERVICE].postal_format)["text"]
        response = web.json_response(
            {
                "error": "too_many_attempts",
                "messages": [{"text": text.replace("{wait_minutes}", str(math.ceil(wait / 60)))}],
            },
            status=429,
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if not isinstance(code, str) or len(code) > 40:
        throttle.failed(address)
        return _refuse(request, "utter_resume_code_unknown", "bad_code", 400)
    settings = request.app[SETTINGS]
    try:
        conversation_id = await asyncio.to_thread(
            resume.redeem, UnitOfWork(settings.database_url), code, request.app[SECRET]
        )
    except StoreUnavailable as err:
        log.error("resume code lookup failed: %s", err)
        return web.json_response(
            {
                "error": "unavailable",
                "messages": [messages.message("utter_service_error", request.app[SERVICE].postal_format)],
            },
            status=503,
        )
    if conversation_id is None:
        throttle.failed(address)
        return _refuse(request, "utter_resume_code_unknown", "unknown_code", 404)
    log.info("pause code accepted")
    try:
        await asyncio.to_thread(chat_sessions.start, UnitOfWork(settings.database_url), conversation_id)
    except StoreUnavailable as err:
        log.error("chat session not stored: the referral store is unavailable (%s)", type(err).__name__)
    response = await _relay(request, conversation_id, RESUME_MESSAGE)
    if response.status == 200:
        _with_cookie(request, response, conversation_id)
    return response


async def chat_message(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return await _refuse_in_conversation(request, "utter_message_not_text", "not_text", 400)
    if len(text) > MAX_MESSAGE_CHARS:
        return await _refuse_in_conversation(request, "utter_invalid_too_long", "too_long", 413)
    text = text.strip().lstrip("/").strip()  # a leading slash would let a user send an intent
    if not text:
        return await _refuse_in_conversation(request, "utter_invalid_empty", "empty", 400)
    conversation_id, ended = await _live_conversation(request)
    if conversation_id is None:
        # No live session: a new conversation, never a guess at someone else's.
        # The message itself is relayed: a first message may be a crisis.
        return await _start_new(request, text, notice=ended)
    response = await _relay(request, conversation_id, text)
    if response.status == 200 and session.COOKIE_NAME not in response.cookies:  # not just deleted
        _with_cookie(request, response, conversation_id)  # the session's Max-Age starts again
    return response


async def _refuse_in_conversation(
    request: web.Request, response_name: str, error: str, status: int
) -> web.Response:
    """A refused message, then the question being asked again (nothing is stored)."""
    conversation_id, _ = await _live_conversation(request)
    if conversation_id is None:
        return _refuse(request, response_name, error, status)
    log.info("chat message refused: %s", error)
    shown = [messages.message(response_name, request.app[SERVICE].postal_format)]
    replies, failure = await _ask_rasa(request, conversation_id, SHOW_QUESTION_MESSAGE)
    if failure is None and replies:
        shown += [
            {k: r[k] for k in ("text", "custom", "buttons") if k in r} for r in replies if isinstance(r, dict)
        ]
    return web.json_response({"error": error, "messages": shown}, status=status)


def _refuse(request: web.Request, response_name: str, error: str, status: int) -> web.Response:
    log.info("chat message refused: %s", error)
    return web.json_response(
        {"error": error, "messages": [messages.message(response_name, request.app[SERVICE].postal_format)]},
        status=status,
    )


async def _relay(request: web.Request, conversation_id: str, text: str) -> web.Response:
    limits = request.app[LIMITS]
    if not limits.allow(conversation_id):
        log.info("chat message refused: rate")
        return await _cannot_answer(request, conversation_id, text, "rate_limited", "utter_busy", 429)
    try:
        await asyncio.wait_for(limits.in_flight.acquire(), timeout=limits.queue_wait)
    except asyncio.TimeoutError:
        log.warning("chat message refused: busy")
        return await _cannot_answer(request, conversation_id, text, "busy", "utter_busy", 503)
    try:
        replies, failure = await _ask_rasa(request, conversation_id, text)
    finally:
        limits.in_flight.release()
    if failure is None and not replies:
        failure = "empty reply"  # Rasa ran the turn, but no action could answer
    if failure is not None:
        log.warning("rasa relay failed: %s", failure)
        actions = f"{request.app[SETTINGS].action_url}/health"
        if failure == "empty reply" and not await _reachable(request.app[CLIENT], actions):
            return await _cannot_answer(
                request, conversation_id, text, "actions_unavailable", "utter_actions_paused", 503
            )
        return await _cannot_answer(
            request, conversation_id, text, "unavailable", "utter_service_unavailable", 503
        )
    out = [
        {key: reply[key] for key in ("text", "custom", "buttons") if key in reply}
        for reply in replies
        if isinstance(reply, dict)
    ]
    shown = [m["custom"]["crisis"] for m in out if isinstance((m.get("custom") or {}).get("crisis"), dict)]
    if shown and not any(c.get("recorded") for c in shown):
        # Rasa showed its fixed crisis wording, but the action server did not
        # follow it up (down, or failed): the event is recorded here.
        first = shown[0]
        await _record_shown(
            request, conversation_id, first.get("level", "crisis"), first.get("subject", "self")
        )
    if any((m.get("custom") or {}).get("conversation") == "deleted" for m in out):
        response = await _forget(request, out, conversation_id)
    else:
        response = web.json_response({"messages": out})
    if any(c.get("level") in ("crisis", "imminent") for c in shown):
        _mark_crisis(request, response)
    return response


def rasa_url_for(settings: Settings, conversation_id: str) -> str:
    """The Rasa server that takes this conversation's turns: always the same
    one of ``settings.rasa_urls``, even while it is down, because each forked
    server keeps its own conversation locks (bot/rasa_ext/forks.py)."""
    urls = settings.rasa_urls
    return urls[int(routing_key(conversation_id), 16) % len(urls)]


async def _ask_rasa(request: web.Request, conversation_id: str, text: str) -> tuple[list | None, str | None]:
    """Rasa's replies to one turn, or why there are none."""
    settings = request.app[SETTINGS]
    try:
        if text.startswith("/"):
            # The gateway's own intents carry the service profile, so even the
            # opening names this country's numbers (the slot defaults to us).
            text = text + json.dumps({"service_profile": request.app[SERVICE].postal_format})
        body: dict = {"sender": conversation_id, "message": text}
        if session.has_crisis_marker(
            request.app[SECRET], request.cookies.get(session.CRISIS_COOKIE_NAME), time.time()
        ):
            body["metadata"] = {"crisis_earlier": True}
        async with request.app[CLIENT].post(
            f"{rasa_url_for(settings, conversation_id)}/webhooks/gateway/webhook",
            json=body,
            # HAProxy keeps a conversation on one Rasa instance by this key (bot/haproxy.py).
            headers={GATEWAY_TOKEN_HEADER: request.app[TOKEN], ROUTING_HEADER: routing_key(conversation_id)},
        ) as response:
            if response.status != 200:
                return None, f"status {response.status}"
            replies = await response.json(content_type=None)
    except asyncio.TimeoutError:
        return None, "timeout"
    except (aiohttp.ClientError, ValueError) as err:
        return None, type(err).__name__
    return (replies, None) if isinstance(replies, list) else (None, "not a list")


async def _cannot_answer(
    request: web.Request, conversation_id: str, text: str, error: str, response_name: str, status: int
) -> web.Response:
    """Rasa did not answer this message: say so, with crisis numbers, and if the
    message itself is a crisis, show the crisis response first and record it."""
    shown = [messages.message(response_name, request.app[SERVICE].postal_format)]
    crisis_shown = False
    if not text.startswith("/"):  # the gateway's own intents are never a person's words
        assessment = await asyncio.to_thread(crisis.assess, text)
        if policy.gateway_response(assessment) is not None:
            log.warning("crisis shown by the gateway while the assistant could not answer")
            profile = request.app[SERVICE].postal_format
            shown.insert(0, messages.crisis_message(assessment.level, assessment.subject, profile))
            await _record_shown(
                request, conversation_id, assessment.level, assessment.subject, assessment.categories
            )
            crisis_shown = True
    response = web.json_response({"error": error, "retry": True, "messages": shown}, status=status)
    if crisis_shown:
        _mark_crisis(request, response)
    return response


async def _record_shown(
    request: web.Request, conversation_id: str, level: str, subject: str, categories=()
) -> None:
    """A crisis event for wording the gateway saw shown: stored, or kept in the outbox."""
    settings = request.app[SETTINGS]
    item = outbox.event(conversation_id, level, subject, list(categories), source="gateway")
    await outbox.record(UnitOfWork(settings.database_url), settings.var_dir, item)


def _mark_crisis(request: web.Request, response: web.StreamResponse) -> None:
    """The browser keeps a signed crisis marker through "start again" and "delete"."""
    response.set_cookie(
        session.CRISIS_COOKIE_NAME,
        session.crisis_marker(request.app[SECRET], time.time()),
        max_age=session.CRISIS_MARKER_DAYS * 86400,
        httponly=True,
        samesite="Strict",
        secure=staff_api.secure(request, request.app[SETTINGS]),
        path="/",
    )


async def _forget(request: web.Request, out: list[dict], conversation_id: str) -> web.Response:
    """The person asked to delete what they gave. Rasa has saved its last turn,
    so the stored chat can go now, and this browser loses the conversation."""
    try:
        removed = await asyncio.to_thread(
            transcripts.delete_conversation, request.app[SETTINGS].tracker_url, conversation_id
        )
    except StoreUnavailable as err:
        # Not deleted: say so, and keep the conversation so "delete" can be tried again.
        log.error("could not delete a conversation on request: %s", err)
        return web.json_response(
            {
                "error": "unavailable",
                "messages": [messages.message("utter_delete_failed", request.app[SERVICE].postal_format)],
            },
            status=503,
        )
    log.info("conversation deleted on request (%d events)", removed)
    response = web.json_response({"messages": out})
    response.del_cookie(session.COOKIE_NAME, path="/")
    return response
