"""The staff API (triage desk): sign in, the queue, one referral, the audit trail.

Every route but sign-in needs a staff session (cookie `ra_staff`, HttpOnly,
SameSite=Strict, ended after 15 minutes idle). Refusals are a bare error
code: nothing personal is ever in an error body. Every view of a referral or
of the queue is written to the audit trail.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import web

from bot import services, staff
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
COOKIE = "ra_staff"


def routes(settings_key) -> list[web.RouteDef]:
    def uow(request: web.Request) -> UnitOfWork:
        return UnitOfWork(request.app[settings_key].database_url)

    def requires(*roles: str):
        def wrap(handler):
            @functools.wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                try:
                    who = await asyncio.to_thread(staff.current, uow(request), request.cookies.get(COOKIE))
                except StoreUnavailable:
                    return _error("unavailable", 503)
                if who is None:
                    return _error("not_signed_in", 401)
                if who.role not in roles:
                    return _error("forbidden", 403)
                return await handler(request, who)

            return guarded

        return wrap

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("username", "password")
        ):
            return _error("bad_request", 400)
        code = body.get("code") if isinstance(body.get("code"), str) else None
        try:
            user = await asyncio.to_thread(
                staff.authenticate, uow(request), body["username"], body["password"], code
            )
        except StoreUnavailable:
            return _error("unavailable", 503)
        if user is None:
            log.info("staff sign-in refused")
            return _error("sign_in_failed", 401)
        token = await asyncio.to_thread(staff.start_session, uow(request), user)
        who = staff.SignedIn(user.username, user.role)
        await asyncio.to_thread(staff.audit, uow(request), who, "sign_in")
        response = web.json_response({"username": user.username, "role": user.role})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")
        return response

    async def logout(request: web.Request) -> web.Response:
        await asyncio.to_thread(staff.end_session, uow(request), request.cookies.get(COOKIE))
        response = web.json_response({"signed_out": True})
        response.del_cookie(COOKIE, path="/")
        return response

    @requires("triage", "admin")
    async def queue(request: web.Request, who: staff.SignedIn) -> web.Response:
        rows = await asyncio.to_thread(staff.queue, uow(request))
        await asyncio.to_thread(staff.audit, uow(request), who, "view_queue", count=len(rows))
        return web.json_response({"note": services.TRIAGE_NOTE, "referrals": rows})

    @requires("triage", "admin")
    async def referral(request: web.Request, who: staff.SignedIn) -> web.Response:
        reference = request.match_info["reference"].upper()
        record = await asyncio.to_thread(services.find_referral, uow(request), reference)
        if record is None:
            return _error("not_found", 404)
        await asyncio.to_thread(staff.audit, uow(request), who, "view_referral", reference)
        return web.json_response(record)

    @requires("admin")
    async def audit_trail(request: web.Request, who: staff.SignedIn) -> web.Response:
        reference = request.query.get("reference")
        return web.json_response(
            {"events": await asyncio.to_thread(staff.audit_trail, uow(request), reference)}
        )

    return [
        web.post("/api/staff/login", login),
        web.post("/api/staff/logout", logout),
        web.get("/api/staff/queue", queue),
        web.get("/api/staff/referrals/{reference}", referral),
        web.get("/api/staff/audit", audit_trail),
    ]


def _error(code: str, status: int) -> web.Response:
    return web.json_response({"error": code}, status=status)
