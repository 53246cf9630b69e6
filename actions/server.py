"""The action server as rasa-sdk builds it, made safe to run beside health data.

rasa-sdk's own server answers anyone, allows every CORS origin, decompresses
a request body without limit, and when an action raises it answers with the
whole request: the conversation, health answers included. Here:

- every route but ``/health`` needs the shared token in ``X-Action-Token``
  (ACTION_SERVER_TOKEN, which Rasa sends from endpoints.yml);
- no CORS at all: only Rasa calls this server, never a browser;
- a request body may be ``MAX_BODY`` bytes, and ``MAX_INFLATED`` once decompressed;
- an error answer names the error's type, never what was sent; the log holds the type only;
- it listens on loopback unless SANIC_HOST says otherwise.
"""

from __future__ import annotations

import hmac
import logging
import zlib

from rasa_sdk.endpoint import create_app
from sanic import Sanic, response

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Action-Token"
MAX_BODY = 2 * 1024 * 1024
MAX_INFLATED = 8 * 1024 * 1024


def build_app(actions: str, token: str) -> Sanic:
    app = create_app(actions, cors_origins=None)
    app.config.REQUEST_MAX_SIZE = MAX_BODY

    @app.on_request
    async def guard(request):
        if request.path == "/health":
            return None
        if not token or not hmac.compare_digest(
            request.headers.get(TOKEN_HEADER, "").encode(), token.encode()
        ):
            return response.json({"error": "forbidden"}, status=403)
        if request.headers.get("Content-Encoding") == "deflate" and not _inflates_within(request.body):
            return response.json({"error": "body_too_large"}, status=413)
        return None

    @app.exception(Exception)
    async def without_echo(request, exception: Exception):
        status = getattr(exception, "status_code", 500)
        log.error("action server error on %s: %s", request.path, type(exception).__name__)
        return response.json(
            {"error": type(exception).__name__}, status=status if 400 <= status < 600 else 500
        )

    return app


def _inflates_within(body: bytes, limit: int = MAX_INFLATED) -> bool:
    inflater = zlib.decompressobj()
    try:
        inflater.decompress(body, limit)
    except zlib.error:
        return True  # not valid deflate: rasa-sdk answers that as an error itself
    return not inflater.unconsumed_tail
