"""The staff API (triage desk): sign in, the queue, one referral, decisions,
the audit figures, exports and the audit trail.

Every route but sign-in needs a staff session (cookie `ra_staff`, HttpOnly,
SameSite=Strict, ended after 15 minutes idle). Refusals are a bare error
code: nothing personal is ever in an error body. Every view of, or change to,
a referral is written to the audit trail. Writes need a JSON body, so a
cross-site form can never post one.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import io
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bot import decisions, fhir, figures, services, staff
from bot.config import Settings
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork
from bot.web.limits import SignInThrottle, client_address

log = logging.getLogger(__name__)
COOKIE = "ra_staff"
TRIAGE = ("triage", "admin")
ADMIN = ("admin",)
QUEUE_COLUMNS = (
    "reference",
    "band",
    "pathway",
    "status",
    "submitted_at",
    "referrer_type",
    "crisis_flag",
    "needs_clarification",
    "repeat_referral",
    "reasons",
)

Handler = Callable[[web.Request, staff.SignedIn], Awaitable[web.StreamResponse]]


def uow(request: web.Request, settings_key) -> UnitOfWork:
    return UnitOfWork(request.app[settings_key].database_url)


def guard(settings_key, roles: tuple[str, ...], refuse: Callable[[str, int], web.StreamResponse]):
    """Run the handler only for a signed-in member of staff with one of ``roles``."""

    def wrap(handler: Handler):
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                who = await asyncio.to_thread(
                    staff.current, uow(request, settings_key), request.cookies.get(COOKIE)
                )
            except StoreUnavailable:
                return refuse("unavailable", 503)
            if who is None:
                return refuse("not_signed_in", 401)
            if who.role not in roles:
                return refuse("forbidden", 403)
            request["staff"] = who
            try:
                return await handler(request, who)
            except StoreUnavailable:
                return refuse("unavailable", 503)

        return guarded

    return wrap


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, token: str, settings: Settings
) -> None:
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=secure(request, settings), path="/"
    )


def secure(request: web.Request, settings: Settings) -> bool:
    """Cookies are Secure over TLS, including TLS ended at a proxy (PUBLIC_ORIGIN https://...)."""
    return request.secure or settings.public_origin.startswith("https://")


THROTTLE = web.AppKey("sign_in_throttle", SignInThrottle)


@dataclass(frozen=True)
class Attempt:
    """A sign-in's outcome: a session token, a wait (throttled), or neither (refused)."""

    token: str | None = None
    who: staff.SignedIn | None = None
    wait: float = 0.0
    unavailable: bool = False


async def sign_in(
    request: web.Request, settings_key, username: str, password: str, code: str | None
) -> Attempt:
    """Check a sign-in (throttled per account and address) and start its session."""
    settings = request.app[settings_key]
    throttle = request.app[THROTTLE]
    address = client_address(request, settings.trusted_proxies)
    wait = throttle.wait(username, address)
    if wait > 0:
        log.warning("staff sign-in refused: too many failed attempts")
        return Attempt(wait=wait)
    store = UnitOfWork(settings.database_url)
    try:
        user = await asyncio.to_thread(staff.authenticate, store, username, password, code)
        if user is None:
            log.info("staff sign-in refused")
            throttle.failed(username, address)
            return Attempt()
        throttle.succeeded(username)
        token = await asyncio.to_thread(staff.start_session, store, user)
    except StoreUnavailable:
        return Attempt(unavailable=True)
    return Attempt(token=token, who=staff.SignedIn(user.username, user.role))


def parse_period(query) -> figures.Period:
    """``from`` and ``to`` as YYYY-MM-DD, both optional. Raises ValueError."""

    def day(name: str) -> dt.date | None:
        value = query.get(name) or None
        return dt.date.fromisoformat(value) if value else None

    return figures.Period(day("from"), day("to"))


def csv_response(header: tuple[str, ...], rows, filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: object) -> str:
    """CSV text that a spreadsheet will never run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):  # one item per line, within the quoted cell
        value = "\n".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def routes(settings_key, service_key) -> list[web.RouteDef]:
    def requires(*roles: str):
        return guard(settings_key, roles, _error)

    def store(request: web.Request) -> UnitOfWork:
        return uow(request, settings_key)

    def settings(request: web.Request) -> Settings:
        return request.app[settings_key]

    async def login(request: web.Request) -> web.Response:
        body = await _json(request)
        if body is None or not all(isinstance(body.get(k), str) for k in ("username", "password")):
            return _error("bad_request", 400)
        code = body.get("code") if isinstance(body.get("code"), str) else None
        attempt = await sign_in(request, settings_key, body["username"], body["password"], code)
        if attempt.wait:
            response = _error("too_many_attempts", 429)
            response.headers["Retry-After"] = str(math.ceil(attempt.wait))
            return response
        if attempt.unavailable:
            return _error("unavailable", 503)
        if attempt.token is None:
            return _error("sign_in_failed", 401)
        user, token = attempt.who, attempt.token
        response = web.json_response({"username": user.username, "role": user.role})
        set_session_cookie(request, response, token, settings(request))
        return response

    async def logout(request: web.Request) -> web.Response:
        await asyncio.to_thread(staff.end_session, store(request), request.cookies.get(COOKIE))
        response = web.json_response({"signed_out": True})
        response.del_cookie(COOKIE, path="/")
        return response

    @requires(*TRIAGE)
    async def queue(request: web.Request, who: staff.SignedIn) -> web.Response:
        rows = await asyncio.to_thread(staff.queue, store(request))
        await asyncio.to_thread(staff.audit, store(request), who, "view_queue", count=len(rows))
        return web.json_response({"note": services.TRIAGE_NOTE, "referrals": rows})

    @requires(*TRIAGE)
    async def queue_csv(request: web.Request, who: staff.SignedIn) -> web.Response:
        rows = await asyncio.to_thread(staff.queue, store(request))
        await asyncio.to_thread(staff.audit, store(request), who, "export_queue", count=len(rows))
        return csv_response(QUEUE_COLUMNS, ([r[c] for c in QUEUE_COLUMNS] for r in rows), "queue.csv")

    async def audited_record(request: web.Request, who: staff.SignedIn, action: str) -> dict | None:
        """The referral named in the path, with the view audited; None if there is none."""
        reference = request.match_info["reference"].upper()
        record = await asyncio.to_thread(services.find_referral, store(request), reference)
        if record is not None:
            await asyncio.to_thread(staff.audit, store(request), who, action, reference)
        return record

    @requires(*TRIAGE)
    async def referral(request: web.Request, who: staff.SignedIn) -> web.Response:
        record = await audited_record(request, who, "view_referral")
        return _error("not_found", 404) if record is None else web.json_response(record)

    @requires(*TRIAGE)
    async def referral_fhir(request: web.Request, who: staff.SignedIn) -> web.Response:
        record = await audited_record(request, who, "export_fhir")
        if record is None:
            return _error("not_found", 404)
        return web.json_response(
            fhir.bundle(record, services.TRIAGE_NOTE), content_type="application/fhir+json"
        )

    def change(action: str, record: Callable[..., dict], fields: dict[str, type]):
        """A POST that records something about one referral, audited."""

        @requires(*TRIAGE)
        async def handler(request: web.Request, who: staff.SignedIn) -> web.Response:
            body = await _json(request)
            if body is None or any(
                k in body and body[k] is not None and not isinstance(body[k], kind)
                for k, kind in fields.items()
            ):
                return _error("bad_request", 400)
            reference = request.match_info["reference"].upper()
            values = {k: body.get(k) for k in fields}
            try:
                if "contacted_at" in values and values["contacted_at"] is not None:
                    values["contacted_at"] = dt.datetime.fromisoformat(values["contacted_at"])
                result = await asyncio.to_thread(
                    record, store(request), reference, who.username, **values, **extra(request, action)
                )
            except ValueError as err:
                code = err.code if isinstance(err, decisions.DecisionError) else "bad_request"
                return _error(code, 404 if code == "not_found" else 400)
            return web.json_response(result)

        return handler

    def extra(request: web.Request, action: str) -> dict:
        if action == "record_decision":
            return {"alternatives": request.app[service_key].criteria.alternatives}
        return {}

    async def audited_figures(request: web.Request, who: staff.SignedIn, action: str) -> dict | None:
        """The figures for the request's date range, audited; None for bad dates."""
        try:
            period = parse_period(request.query)
        except ValueError:
            return None
        numbers = await asyncio.to_thread(
            figures.compute, store(request), settings(request).tracker_url, period
        )
        await asyncio.to_thread(staff.audit, store(request), who, action, **period.as_dict())
        return numbers

    @requires(*TRIAGE)
    async def figures_json(request: web.Request, who: staff.SignedIn) -> web.Response:
        numbers = await audited_figures(request, who, "view_figures")
        return _error("bad_dates", 400) if numbers is None else web.json_response(numbers)

    @requires(*TRIAGE)
    async def figures_csv(request: web.Request, who: staff.SignedIn) -> web.Response:
        numbers = await audited_figures(request, who, "export_figures")
        if numbers is None:
            return _error("bad_dates", 400)
        return csv_response(("breakdown", "group", "measure", "value"), figures.rows(numbers), "figures.csv")

    @requires(*ADMIN)
    async def audit_trail(request: web.Request, who: staff.SignedIn) -> web.Response:
        reference = request.query.get("reference")
        return web.json_response(
            {"events": await asyncio.to_thread(staff.audit_trail, store(request), reference)}
        )

    return [
        web.post("/api/staff/login", login),
        web.post("/api/staff/logout", logout),
        web.get("/api/staff/queue", queue),
        web.get("/api/staff/queue.csv", queue_csv),
        web.get("/api/staff/referrals/{reference}", referral),
        web.get("/api/staff/referrals/{reference}/fhir", referral_fhir),
        web.post(
            "/api/staff/referrals/{reference}/decision",
            change(
                "record_decision",
                decisions.record_decision,
                {"decision": str, "band": str, "redirect_to": str, "safety_action": str, "note": str},
            ),
        ),
        web.post(
            "/api/staff/referrals/{reference}/first-contact",
            change(
                "record_first_contact",
                decisions.record_first_contact,
                {"contacted_at": str, "risk_band": str, "note": str},
            ),
        ),
        web.post(
            "/api/staff/referrals/{reference}/redirect-outcome",
            change("record_redirect_outcome", decisions.record_redirect_outcome, {"outcome": str}),
        ),
        web.get("/api/staff/figures", figures_json),
        web.get("/api/staff/figures.csv", figures_csv),
        web.get("/api/staff/audit", audit_trail),
    ]


async def _json(request: web.Request) -> dict | None:
    if request.content_type != "application/json":
        return None
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _error(code: str, status: int) -> web.Response:
    return web.json_response({"error": code}, status=status)
