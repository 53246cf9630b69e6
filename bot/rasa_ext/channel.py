"""The gateway's channel: Rasa's REST channel, but a failed turn says so.

Rasa's own REST channel answers HTTP 200 whatever happens: an empty list
when the conversation store failed or a turn timed out, and it logs the
person's message when it does. This channel:

- needs the shared token (``X-Gateway-Token``, from GATEWAY_TOKEN); with none
  set it refuses every request (and bot.rasa_ext refuses to start);
- gives a turn at most ``TURN_DEADLINE`` seconds, then cancels it (nothing
  of the turn is saved) and answers 504;
- answers 503 ``{"error": "store_unavailable"}`` when the conversation store
  failed, and 500 ``{"error": "turn_failed"}`` for any other error;
- never logs or echoes what the person wrote.

URL: ``/webhooks/gateway/webhook``; ``GET /webhooks/gateway/`` is its health check.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from bot import heap
from bot.rasa_ext import patches
from bot.rasa_ext.tracker_store import TrackerStoreUnavailable

log = logging.getLogger(__name__)

# Inside the gateway's wait (RASA_TIMEOUT, at most 10 s), outside one action
# call (ACTION_TIMEOUT), and well inside the conversation lock's lifetime
# (TICKET_LOCK_LIFETIME), so a turn is never processed twice at once.
TURN_DEADLINE = 9.0
TOKEN_HEADER = "X-Gateway-Token"


class GatewayInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "gateway"

    @classmethod
    def from_credentials(cls, credentials):
        return cls()

    def __init__(self, token: str | None = None, deadline: float = TURN_DEADLINE):
        self.token = token if token is not None else os.environ.get("GATEWAY_TOKEN", "")
        self.deadline = deadline

    def blueprint(self, on_new_message) -> Blueprint:
        hook = Blueprint("gateway_webhook", __name__)

        @hook.listener("after_server_start")
        async def settle(app, loop) -> None:
            # Rasa loads the model before the server starts (before_server_start).
            heap.settle()

        @hook.listener("after_server_stop")
        async def close(app, loop) -> None:
            await patches.close_sessions()  # the action server's connections, kept open between calls

        @hook.route("/", methods=["GET"])
        async def health(request: Request):
            return response.json({"status": "ok"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request):
            # Fail closed: with no token configured nothing is accepted.
            if not self.token or not hmac.compare_digest(
                request.headers.get(TOKEN_HEADER, "").encode(), self.token.encode()
            ):
                return response.json({"error": "forbidden"}, status=403)
            body = request.json if isinstance(request.json, dict) else {}
            sender, text = body.get("sender"), body.get("message")
            if not isinstance(sender, str) or not isinstance(text, str):
                return response.json({"error": "bad_request"}, status=400)
            collector = CollectingOutputChannel()
            # Only the gateway's own markers ride along (crisis_earlier); nothing a person wrote.
            metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
            message = UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata)
            try:
                await asyncio.wait_for(on_new_message(message), timeout=self.deadline)
            except asyncio.TimeoutError:
                log.error("turn cancelled after %.0f s", self.deadline)
                return response.json({"error": "timeout"}, status=504)
            except TrackerStoreUnavailable:
                return response.json({"error": "store_unavailable"}, status=503)
            except Exception as error:  # noqa: BLE001 - any failure must be visible, never a silent 200
                log.error("turn failed: %s", type(error).__name__)
                return response.json({"error": "turn_failed"}, status=500)
            return response.json(collector.messages)

        return hook
