"""The referral service as the gateway: sessions, refusals, and Rasa's silent failures.

A recording stand-in for Rasa's REST channel shows what reaches it; the
end-to-end tests run the same paths against the real Rasa.
"""

import asyncio
import dataclasses

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Settings
from bot.web import session
from bot.web.app import SECRET, Limits, create_app

SAVED = "Sorry, the service is not working for a moment. Your answers so far are safe."
PAUSED = "Sorry, part of the service is paused"
BUSY = "We're busy. Your answers are saved, please try again in a moment."
CRISIS_TEXT = "I am going to kill myself tonight"


class FakeRasa:
    def __init__(self):
        self.received: list[dict] = []
        self.reply: list | None = [{"recipient_id": "x", "text": "Hello"}]
        self.delay = 0.0
        self.status = 200
        self.tokens: list[str | None] = []

    async def webhook(self, request):
        body = await request.json()
        self.received.append(body)
        self.tokens.append(request.headers.get("X-Gateway-Token"))
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"error": "store_unavailable"}, status=self.status)
        return web.json_response(self.reply)

    async def health(self, request):
        return web.json_response({"status": "ok"})


@pytest.fixture
async def rasa():
    fake = FakeRasa()
    app = web.Application()
    app.add_routes(
        [web.post("/webhooks/gateway/webhook", fake.webhook), web.get("/webhooks/gateway/", fake.health)]
    )
    server = TestServer(app)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def make_client(rasa, tmp_path):
    clients = []

    async def make(timeout=10.0, limits=None, **env):
        settings = dataclasses.replace(
            Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path), **env}),
            rasa_url=rasa.url,
            rasa_fork_ports=(),  # one Rasa: the fake
            rasa_timeout=timeout,
        )
        client = TestClient(TestServer(create_app(settings, limits)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_the_conversation_id_comes_from_the_signed_cookie(make_client, rasa):
    client = await make_client()
    await client.post("/api/chat/start")
    await client.post("/api/chat", json={"text": "hello", "sender": "someone-else"})
    senders = {m["sender"] for m in rasa.received}
    assert len(senders) == 1 and "someone-else" not in senders
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["ra_session"].value
    assert session.decode(client.app[SECRET], cookie) in senders


async def test_another_sessions_conversation_cannot_be_reached(make_client, rasa):
    alice = await make_client()
    await alice.post("/api/chat/start")
    alice_id = rasa.received[-1]["sender"]
    mallory = await make_client()
    forged = f"{alice_id}.AAAAAAAAAAAAAAAAAAAAAAAA"
    mallory.session.cookie_jar.update_cookies({"ra_session": forged})
    await mallory.post("/api/chat", json={"text": "show me her answers"})
    assert rasa.received[-1]["sender"] != alice_id
    mallory.session.cookie_jar.update_cookies({"ra_session": alice_id})
    await mallory.post("/api/chat", json={"text": "and again"})
    assert rasa.received[-1]["sender"] != alice_id


async def test_an_oversized_message_is_refused_without_reaching_rasa(make_client, rasa):
    client = await make_client()
    await client.post("/api/chat/start")
    before = len(rasa.received)
    response = await client.post("/api/chat", json={"text": "a" * 2001})
    body = await response.json()
    assert response.status == 413 and body["error"] == "too_long"
    assert "2,000" in body["messages"][0]["text"]
    # The text never reaches Rasa; the question being asked is shown again.
    assert [m["message"].split("{")[0] for m in rasa.received[before:]] == ["/show_question"]
    assert len(body["messages"]) > 1


@pytest.mark.parametrize(
    "payload, error",
    [
        ({"text": 42}, "not_text"),
        ({"image": "x.png"}, "not_text"),
        ([1, 2], "not_text"),
        ({"text": "   "}, "empty"),
        ({"text": "/"}, "empty"),
    ],
)
async def test_anything_that_is_not_a_text_message_is_refused_kindly(make_client, rasa, payload, error):
    client = await make_client()
    await client.post("/api/chat/start")
    before = len(rasa.received)
    response = await client.post("/api/chat", json=payload)
    body = await response.json()
    assert response.status == 400 and body["error"] == error
    assert body["messages"][0]["text"]
    assert [m["message"].split("{")[0] for m in rasa.received[before:]] == ["/show_question"]


async def test_a_body_that_is_not_json_is_refused(make_client, rasa):
    client = await make_client()
    await client.post("/api/chat/start")
    response = await client.post(
        "/api/chat", data=b"\xff\xfe<not json>", headers={"Content-Type": "text/plain"}
    )
    assert response.status == 400


async def test_a_user_cannot_send_an_intent(make_client, rasa):
    client = await make_client()
    await client.post("/api/chat/start")
    await client.post("/api/chat", json={"text": "/restart"})
    assert rasa.received[-1]["message"] == "restart"


async def test_an_empty_reply_with_the_action_server_down_says_the_rest_is_paused(make_client, rasa):
    client = await make_client()  # nothing listens on the action server's port
    rasa.reply = []
    response = await client.post("/api/chat/start")
    body = await response.json()
    assert response.status == 503 and body["error"] == "actions_unavailable" and body["retry"] is True
    text = body["messages"][0]["text"]
    assert text.startswith(PAUSED) and "988" in text and "911" in text


async def test_a_failed_turn_says_the_answers_are_safe(make_client, rasa):
    client = await make_client()
    rasa.status = 503  # the conversation store is down (bot/rasa_ext/channel.py)
    response = await client.post("/api/chat", json={"text": "Jane"})
    body = await response.json()
    assert response.status == 503 and body["error"] == "unavailable"
    assert body["messages"][0]["text"].startswith(SAVED)
    assert [m for m in body["messages"] if "crisis" in m.get("custom", {})] == []


async def test_a_crisis_sent_while_rasa_cannot_answer_still_gets_the_crisis_response(make_client, rasa):
    client = await make_client()
    rasa.status = 503
    body = await (await client.post("/api/chat", json={"text": CRISIS_TEXT})).json()
    crisis, then = body["messages"]
    assert crisis["custom"]["crisis"]["level"] in ("crisis", "imminent")
    assert "988" in crisis["text"] and "911" in crisis["text"]
    assert then["text"].startswith(SAVED)


async def test_a_rasa_timeout_shows_the_answers_are_saved_message(make_client, rasa):
    client = await make_client(timeout=0.5)
    rasa.delay = 2
    response = await client.post("/api/chat/start")
    assert response.status == 503
    assert (await response.json())["messages"][0]["text"].startswith(SAVED)


async def test_rasa_down_shows_the_answers_are_saved_message(rasa, tmp_path):
    settings = dataclasses.replace(
        Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)}),
        rasa_url="http://127.0.0.1:9",
        rasa_fork_ports=(),
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.post("/api/chat/start")
        assert response.status == 503
        assert (await response.json())["messages"][0]["text"].startswith(SAVED)


async def test_rasa_is_shown_the_gateway_token(make_client, rasa, tmp_path):
    client = await make_client()
    await client.post("/api/chat/start")
    assert rasa.tokens == [(tmp_path / "gateway_token").read_text().strip()]


async def test_a_conversation_sending_too_fast_is_told_to_wait_and_a_crisis_still_gets_through(
    make_client, rasa
):
    client = await make_client(limits=Limits(per_conversation=3, window=60))
    for _ in range(3):
        assert (await client.post("/api/chat", json={"text": "hello"})).status == 200
    response = await client.post("/api/chat", json={"text": "hello"})
    body = await response.json()
    assert response.status == 429 and body["messages"][0]["text"].startswith(BUSY)
    body = await (await client.post("/api/chat", json={"text": CRISIS_TEXT})).json()
    assert "crisis" in body["messages"][0]["custom"] and body["messages"][1]["text"].startswith(BUSY)
    assert len(rasa.received) == 3


async def test_beyond_capacity_the_answer_is_busy_without_waiting_for_room(make_client, rasa):
    client = await make_client(limits=Limits(in_flight=1, queue_wait=0.3))
    rasa.delay = 3
    first = asyncio.ensure_future(client.post("/api/chat", json={"text": "one"}))
    await asyncio.sleep(0.2)
    response = await client.post("/api/chat", json={"text": "two"})
    assert response.status == 503 and (await response.json())["error"] == "busy"
    assert not first.done()  # "busy" came back while the one turn Rasa had room for still ran
    assert (await first).status == 200
    assert [m["message"] for m in rasa.received] == ["one"]


async def test_a_write_from_another_site_is_refused(make_client, rasa):
    client = await make_client()
    response = await client.post("/api/chat/start", headers={"Origin": "https://evil.example"})
    assert response.status == 403 and rasa.received == []
    same = await client.post("/api/chat/start", headers={"Origin": str(client.make_url("")).rstrip("/")})
    assert same.status == 200
    # A form posted under Referrer-Policy: no-referrer (the desk's own) says "null".
    assert (await client.post("/api/chat/start", headers={"Origin": "null"})).status == 200


async def test_chat_page_and_api_are_not_cached_and_send_security_headers(make_client):
    client = await make_client()
    page = await client.get("/")
    assert page.status == 200 and 'role="log"' in await page.text()
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    api = await client.post("/api/chat/start")
    assert api.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/api/nowhere", 404),
        ("PUT", "/api/chat", 405),
        ("GET", "/staff/queue", 303),
    ],
)
async def test_errors_and_redirects_send_the_security_headers_too(make_client, method, path, status):
    client = await make_client()
    response = await client.request(method, path, allow_redirects=False)
    assert response.status == status
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert (
        response.headers["X-Frame-Options"] == "DENY" and response.headers["Referrer-Policy"] == "no-referrer"
    )
    if path.startswith(("/api/", "/staff")):
        assert response.headers["Cache-Control"] == "no-store"


async def test_health_reports_each_process(make_client):
    client = await make_client()
    response = await client.get("/healthz")
    body = await response.json()
    assert body["web"] is True and body["rasa"] is True and body["actions"] is False
    assert response.status == 503 and body["status"] == "degraded"


def test_cookie_signatures():
    secret = b"s" * 32
    cookie = session.encode(secret, "abc")
    assert session.decode(secret, cookie) == "abc"
    assert session.decode(b"other", cookie) is None
    for bad in (None, "", "abc", "abc.def.ghi", ".sig", cookie + "x"):
        assert session.decode(secret, bad) is None


async def test_a_first_message_without_a_session_is_relayed_not_dropped(make_client, rasa):
    client = await make_client()
    response = await client.post("/api/chat", json={"text": "I want to end my life"})
    assert response.status == 200
    assert rasa.received[-1]["message"] == "I want to end my life"
    assert "ra_session" in {c.key for c in client.session.cookie_jar}


async def test_help_now_lists_emergency_the_lifeline_and_the_local_crisis_line(make_client):
    client = await make_client()
    response = await client.get("/api/help-now")
    resources = (await response.json())["resources"]
    calls = [r["call"] for r in resources]
    assert calls[0] == "911" and "988" in calls and "(555) 010-0100" in calls


async def test_a_pause_code_reopens_its_conversation_in_a_new_browser(make_client, rasa, tmp_path):
    from bot import resume
    from bot.store.migrate import upgrade
    from bot.store.unit_of_work import UnitOfWork

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    client = await make_client()
    code = resume.issue(UnitOfWork(url), "paused-conversation", client.app[SECRET], days=7)
    response = await client.post("/api/chat/resume", json={"code": code})
    assert response.status == 200
    assert rasa.received[-1] == {
        "sender": "paused-conversation",
        "message": '/resume_conversation{"service_profile": "us"}',  # the gateway's intent, with the profile
    }
    cookie = response.cookies[session.COOKIE_NAME].value
    assert session.decode(client.app[SECRET], cookie) == "paused-conversation"


@pytest.mark.parametrize("body", [{"code": "ZZZZ-ZZZZ"}, {"code": 12}, {}, {"code": "x" * 500}])
async def test_an_unknown_or_malformed_code_is_refused_without_reaching_rasa(
    make_client, rasa, tmp_path, body
):
    from bot.store.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'referrals.db'}")
    client = await make_client()
    response = await client.post("/api/chat/resume", json=body)
    assert response.status in (400, 404)
    assert "do not know that code" in (await response.json())["messages"][0]["text"]
    assert rasa.received == []


async def test_a_deleted_conversation_is_removed_from_the_tracker_store(make_client, rasa, tmp_path):
    import sqlite3

    tracker_db = tmp_path / "tracker.db"
    with sqlite3.connect(tracker_db) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id TEXT, data TEXT)")
        db.executemany(
            "INSERT INTO events (sender_id, data) VALUES (?, ?)", [("me", "x"), ("me", "y"), ("other", "z")]
        )
    client = await make_client()
    client.session.cookie_jar.update_cookies({session.COOKIE_NAME: session.encode(client.app[SECRET], "me")})
    rasa.reply = [{"recipient_id": "me", "text": "Done.", "custom": {"conversation": "deleted"}}]
    response = await client.post("/api/chat", json={"text": "Yes, delete everything"})
    assert response.status == 200
    assert response.cookies[session.COOKIE_NAME].value == ""  # the browser forgets it
    with sqlite3.connect(tracker_db) as db:
        assert db.execute("SELECT sender_id FROM events").fetchall() == [("other",)]


async def test_a_delete_that_fails_says_so_and_keeps_the_conversation(make_client, rasa, tmp_path):
    (tmp_path / "tracker.db").write_bytes(b"not a database")
    client = await make_client()
    client.session.cookie_jar.update_cookies({session.COOKIE_NAME: session.encode(client.app[SECRET], "me")})
    rasa.reply = [{"recipient_id": "me", "text": "Done.", "custom": {"conversation": "deleted"}}]
    response = await client.post("/api/chat", json={"text": "Yes, delete everything"})
    assert response.status == 503
    assert "could not finish deleting" in (await response.json())["messages"][0]["text"]
    assert session.COOKIE_NAME not in response.cookies


CRISIS_REPLY = [
    {"recipient_id": "x", "text": "Thank you for telling me. Call or text 988. In an emergency, call 911."},
    {"recipient_id": "x", "custom": {"crisis": {"level": "crisis", "subject": "self", "resources": []}}},
]


async def test_crisis_wording_rasa_showed_without_its_follow_up_is_recorded_by_the_gateway(
    make_client, rasa, tmp_path
):
    from bot import outbox

    client = await make_client()
    rasa.reply = CRISIS_REPLY  # the fixed response, and no follow-up (the action server is down)
    response = await client.post("/api/chat", json={"text": "I want to end my life"})
    assert response.status == 200
    [event] = outbox.pending(tmp_path)  # no store here: kept for when there is one
    assert (event["level"], event["source"]) == ("crisis", "gateway")

    rasa.reply = [*CRISIS_REPLY[:1], {"custom": {"crisis": {"level": "crisis", "recorded": True}}}]
    await client.post("/api/chat", json={"text": "I want to end my life"})
    assert len(outbox.pending(tmp_path)) == 1  # the follow-up recorded this one itself


async def test_the_crisis_marker_outlives_start_again_and_delete(make_client, rasa):
    client = await make_client()
    rasa.reply = CRISIS_REPLY
    await client.post("/api/chat", json={"text": "I want to end my life"})
    marker = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("ra_crisis")
    assert marker is not None and "." in marker.value

    rasa.reply = [{"recipient_id": "x", "text": "Deleted.", "custom": {"conversation": "deleted"}}]
    await client.post("/api/chat", json={"text": "yes, delete everything"})
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    assert "ra_crisis" in cookies and "ra_session" not in cookies

    rasa.reply = [{"recipient_id": "x", "text": "Hello"}]
    await client.post("/api/chat/restart")
    await client.post("/api/chat", json={"text": "Jane"})
    assert rasa.received[-1]["metadata"] == {"crisis_earlier": True}


async def test_a_forged_or_conversation_cookie_is_no_crisis_marker(make_client, rasa):
    client = await make_client()
    await client.post("/api/chat/start")
    session = client.session.cookie_jar.filter_cookies(client.make_url("/"))["ra_session"].value
    client.session.cookie_jar.update_cookies({"ra_crisis": session})  # a valid cookie, of the wrong kind
    await client.post("/api/chat", json={"text": "Jane"})
    assert "metadata" not in rasa.received[-1]


async def test_eleven_wrong_pause_codes_from_one_address_are_refused_for_a_while(make_client, rasa, tmp_path):
    from bot import resume
    from bot.store.migrate import upgrade
    from bot.store.unit_of_work import UnitOfWork

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    client = await make_client()
    code = resume.issue(UnitOfWork(url), "paused-conversation", client.app[SECRET], days=7)
    for _ in range(10):
        assert (await client.post("/api/chat/resume", json={"code": "ZZZZ-ZZZZ"})).status == 404
    refused = await client.post("/api/chat/resume", json={"code": "ZZZZ-ZZZZ"})
    body = await refused.json()
    assert refused.status == 429 and body["error"] == "too_many_attempts"
    assert int(refused.headers["Retry-After"]) > 0
    assert "15 minutes" in body["messages"][0]["text"]
    # From this address even the right code waits now; the code itself still works later.
    assert (await client.post("/api/chat/resume", json={"code": code})).status == 429


async def test_a_right_pause_code_from_another_address_works_after_one_address_is_refused(
    make_client, rasa, tmp_path
):
    from bot import resume
    from bot.store.migrate import upgrade
    from bot.store.unit_of_work import UnitOfWork

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    client = await make_client(TRUSTED_PROXIES="127.0.0.1, ::1")  # as behind the TLS proxy
    code = resume.issue(UnitOfWork(url), "paused-conversation", client.app[SECRET], days=7)
    guesser, owner = {"X-Forwarded-For": "203.0.113.66"}, {"X-Forwarded-For": "198.51.100.23"}
    for _ in range(11):
        last = await client.post("/api/chat/resume", json={"code": "ZZZZ-ZZZZ"}, headers=guesser)
    assert last.status == 429
    assert (await client.post("/api/chat/resume", json={"code": code}, headers=guesser)).status == 429
    opened = await client.post("/api/chat/resume", json={"code": code}, headers=owner)
    assert opened.status == 200 and rasa.received[-1]["sender"] == "paused-conversation"


def test_the_pause_code_limit_is_per_address_and_in_all():
    from bot.web.app import RESUME_TRIES_IN_ALL, RESUME_TRIES_PER_ADDRESS
    from bot.web.limits import AttemptLimit

    limit = AttemptLimit(per_address=RESUME_TRIES_PER_ADDRESS, in_all=RESUME_TRIES_IN_ALL)
    for _ in range(RESUME_TRIES_PER_ADDRESS):
        limit.failed("203.0.113.1", now=0)
    assert limit.wait("203.0.113.1", now=1) > 0
    assert limit.wait("198.51.100.7", now=1) == 0  # another address may still try
    for i in range(RESUME_TRIES_IN_ALL):
        limit.failed(f"10.0.{i // 250}.{i % 250}", now=2)
    assert limit.wait("198.51.100.7", now=3) > 0  # guessing from many addresses stops too
    assert limit.wait("198.51.100.7", now=16 * 60) == 0  # and the window passes


# ---------------------------------------------------------------- sessions that end


async def _migrated_client(make_client, tmp_path, **env):
    from bot.store.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'referrals.db'}")
    return await make_client()


async def test_the_chat_cookie_has_a_max_age_and_is_http_only(make_client, rasa, tmp_path):
    client = await _migrated_client(make_client, tmp_path)
    response = await client.post("/api/chat/start")
    cookie = response.cookies[session.COOKIE_NAME]
    assert cookie["max-age"] == str(30 * 60) and cookie["httponly"] and cookie["samesite"] == "Strict"


async def test_an_idle_session_ends_and_the_next_message_starts_a_new_chat(make_client, rasa, tmp_path):
    import datetime as dt

    from bot import chat_sessions
    from bot.store.models import ChatSession
    from bot.store.unit_of_work import UnitOfWork

    client = await _migrated_client(make_client, tmp_path)
    await client.post("/api/chat/start")
    first = rasa.received[-1]["sender"]
    with UnitOfWork(f"sqlite:///{tmp_path / 'referrals.db'}") as uow:  # 31 minutes pass
        uow.session.get(ChatSession, first).last_seen -= dt.timedelta(minutes=31)
        uow.commit()
    response = await client.post("/api/chat", json={"text": "Jane"})
    body = await response.json()
    assert rasa.received[-1]["sender"] != first  # the old conversation is not carried on
    assert rasa.received[-1]["message"] == "Jane"  # nothing typed is lost
    assert "closed, to keep your answers private" in body["messages"][0]["text"]
    assert "pause code" in body["messages"][0]["text"]
    assert (
        chat_sessions.check(
            UnitOfWork(f"sqlite:///{tmp_path / 'referrals.db'}"), first, dt.timedelta(minutes=30)
        )
        == chat_sessions.ENDED
    )


async def test_leaving_ends_the_session_on_the_server_so_a_kept_cookie_opens_nothing(
    make_client, rasa, tmp_path
):
    client = await _migrated_client(make_client, tmp_path)
    await client.post("/api/chat/start")
    first = rasa.received[-1]["sender"]
    kept = client.session.cookie_jar.filter_cookies(client.make_url("/"))[session.COOKIE_NAME].value
    response = await client.post("/api/chat/forget")
    assert response.status == 204
    assert session.COOKIE_NAME not in client.session.cookie_jar.filter_cookies(client.make_url("/"))
    client.session.cookie_jar.update_cookies({session.COOKIE_NAME: kept})  # someone kept a copy
    await client.post("/api/chat/start")
    assert rasa.received[-1]["sender"] != first


async def test_start_again_ends_the_old_session(make_client, rasa, tmp_path):
    client = await _migrated_client(make_client, tmp_path)
    await client.post("/api/chat/start")
    first = rasa.received[-1]["sender"]
    old = client.session.cookie_jar.filter_cookies(client.make_url("/"))[session.COOKIE_NAME].value
    await client.post("/api/chat/restart")
    client.session.cookie_jar.update_cookies({session.COOKIE_NAME: old})
    await client.post("/api/chat", json={"text": "hello"})
    assert rasa.received[-1]["sender"] != first


async def test_a_pause_code_still_opens_a_conversation_whose_session_ended(make_client, rasa, tmp_path):
    from bot import resume
    from bot.store.unit_of_work import UnitOfWork

    client = await _migrated_client(make_client, tmp_path)
    await client.post("/api/chat/start")
    first = rasa.received[-1]["sender"]
    code = resume.issue(
        UnitOfWork(f"sqlite:///{tmp_path / 'referrals.db'}"), first, client.app[SECRET], days=7
    )
    await client.post("/api/chat/forget")
    assert (await client.post("/api/chat/resume", json={"code": code})).status == 200
    await client.post("/api/chat", json={"text": "Jane"})
    assert rasa.received[-1]["sender"] == first


def test_the_last_message_time_is_written_at_most_every_step_and_never_keeps_a_session_longer(tmp_path):
    import datetime as dt

    from bot import chat_sessions
    from bot.store.migrate import upgrade
    from bot.store.models import ChatSession
    from bot.store.unit_of_work import UnitOfWork

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    idle, step = dt.timedelta(minutes=30), chat_sessions.SEEN_STEP
    start = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
    chat_sessions.start(UnitOfWork(url), "c", now=start)

    def seen() -> dt.datetime:
        with UnitOfWork(url) as uow:
            value = uow.session.get(ChatSession, "c").last_seen
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)

    # Messages every 20 s: written only once a step has passed since the last write.
    now, written = start, {start}
    for _ in range(10):
        now += dt.timedelta(seconds=20)
        assert chat_sessions.check(UnitOfWork(url), "c", idle, now=now) == chat_sessions.LIVE
        assert now - step < seen() <= now
        written.add(seen())
    assert len(written) == 1 + int((now - start) / step)  # 200 s of messages: 3 writes, not 10
    last_message = now
    # It ends no later than idle after the last message, and at most a step sooner.
    ends = seen() + idle + dt.timedelta(microseconds=1)
    assert last_message + idle - step <= ends <= last_message + idle + dt.timedelta(microseconds=1)
    assert chat_sessions.check(UnitOfWork(url), "c", idle, now=ends) == chat_sessions.IDLE
