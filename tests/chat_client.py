"""A web-chat client for end-to-end tests: cookies, the gateway API, the protocol."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    messages: list[dict]
    error: str | None = None

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if "text" in m]

    @property
    def question(self) -> dict | None:
        """The last `custom` question payload in this reply (field/input/...)."""
        asks = [m["custom"] for m in self.messages if "field" in m.get("custom", {})]
        return asks[-1] if asks else None

    @property
    def submitted(self) -> dict | None:
        done = [m["custom"]["submitted"] for m in self.messages if "submitted" in m.get("custom", {})]
        return done[-1] if done else None


@dataclass
class ChatClient:
    base_url: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def post(
        self, path: str, body: object, raw: bytes | None = None, content_type: str = "application/json"
    ) -> Reply:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                status, payload = response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            status, payload = err.code, json.loads(err.read())
        return Reply(status, payload.get("messages", []), payload.get("error"))

    def start(self) -> Reply:
        return self.post("/api/chat/start", {})

    def say(self, text: str) -> Reply:
        return self.post("/api/chat", {"text": text})

    def cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name == "ra_session"), None)


def gateway_turn(
    url: str, token: str, sender: str, text: str, headers: dict | None = None
) -> tuple[Reply, str]:
    """One turn posted to Rasa's gateway channel at `url` (an instance or
    HAProxy): the reply, and the instance HAProxy says answered ("" if none)."""
    request = urllib.request.Request(
        url + "/webhooks/gateway/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Gateway-Token": token, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, upstream, body = response.status, response.headers.get("X-Upstream"), response.read()
    except urllib.error.HTTPError as err:
        status, upstream, body = err.code, err.headers.get("X-Upstream"), err.read()
    try:
        payload = json.loads(body)
    except ValueError:
        return Reply(status, [], "not json"), upstream or ""
    if isinstance(payload, dict):
        return Reply(status, [], payload.get("error")), upstream or ""
    return Reply(status, payload), upstream or ""


class _Conversation:
    def send(self, text: str) -> Reply:
        raise NotImplementedError

    def start(self) -> Reply:
        return self.send("/greet")

    def say(self, text: str) -> Reply:
        return self.send(text)


@dataclass
class InstanceChat(_Conversation):
    """One conversation spoken straight to Rasa's gateway channel, each turn to
    the next of ``urls`` in rotation (the production profile's instances)."""

    urls: list[str]
    token: str
    sender: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (instance url, text) in order

    def send(self, text: str, url: str | None = None) -> Reply:
        url = url or self.urls[len(self.sent) % len(self.urls)]
        self.sent.append((url, text))
        return gateway_turn(url, self.token, self.sender, text)[0]


@dataclass
class BalancedChat(_Conversation):
    """One conversation spoken to Rasa through HAProxy, as the web gateway
    speaks it (the routing key set); `sent` records which instance answered."""

    url: str
    token: str
    sender: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (instance name, text) in order

    def send(self, text: str) -> Reply:
        from bot.haproxy import ROUTING_HEADER, routing_key

        reply, upstream = gateway_turn(
            self.url, self.token, self.sender, text, {ROUTING_HEADER: routing_key(self.sender)}
        )
        self.sent.append((upstream, text))
        return reply


def play(
    client: ChatClient,
    answers: dict[str, str],
    stop_at: str = "review",
    first: Reply | None = None,
    limit: int = 80,
) -> Reply:
    """Answer each question by its custom.field until `stop_at` is asked."""
    reply = first or client.start()
    for _ in range(limit):
        question = reply.question
        assert question is not None, f"no question in reply: {reply}"
        if question["field"] == stop_at:
            return reply
        assert question["field"] in answers, f"persona has no answer for {question['field']}"
        reply = client.say(answers[question["field"]])
    raise AssertionError(f"{stop_at} was never asked")
