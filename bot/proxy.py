"""`python -m bot.proxy`: a small reverse proxy in front of several Rasa instances.

The production profile runs more than one Rasa server (README "Deployment").
The web service talks to this proxy as if it were one Rasa: each request goes
to the next instance in turn (round robin), so one conversation's turns move
between instances. That is safe because the instances share the tracker store
(PostgreSQL) and the conversation lock (Redis).

- An instance that refuses the connection is skipped and the next one tried:
  the request never reached it, so nothing was processed twice. Any other
  failure (a timeout, a reset after sending) is answered 502, never retried.
- Each answer carries ``X-Upstream`` (which instance answered), and
  ``GET /proxy/status`` counts the requests each instance has had.
- It logs no path query, header or body: the body holds what a person wrote.

Settings (from the runner): ``RASA_UPSTREAMS`` (comma-separated base URLs),
``RASA_PORT`` (where it listens, on 127.0.0.1) and ``RASA_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from dataclasses import dataclass

import aiohttp
from aiohttp import web

log = logging.getLogger("bot.proxy")

UPSTREAMS = web.AppKey("upstreams", list)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
TURN = web.AppKey("turn", itertools.cycle)
FORWARDED_HEADERS = ("Content-Type", "X-Gateway-Token")
MAX_BODY = 64 * 1024  # the web service sends at most a 2,000-character message


@dataclass
class Upstream:
    name: str
    url: str
    requests: int = 0
    refused: int = 0


def create_app(urls: list[str], timeout: float = 10.0) -> web.Application:
    if not urls:
        raise ValueError("the proxy needs at least one upstream URL (RASA_UPSTREAMS)")
    app = web.Application(client_max_size=MAX_BODY)
    app[UPSTREAMS] = [Upstream(f"rasa-{i}", url.rstrip("/")) for i, url in enumerate(urls, start=1)]
    app[TURN] = itertools.cycle(range(len(urls)))

    async def client(app: web.Application):
        app[CLIENT] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        yield
        await app[CLIENT].close()

    app.cleanup_ctx.append(client)
    app.router.add_get("/proxy/status", status)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


async def status(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "upstreams": [
                {"name": u.name, "requests": u.requests, "refused": u.refused} for u in request.app[UPSTREAMS]
            ]
        }
    )


async def forward(request: web.Request) -> web.Response:
    upstreams = request.app[UPSTREAMS]
    body = await request.read()
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    first = next(request.app[TURN])
    for offset in range(len(upstreams)):
        upstream = upstreams[(first + offset) % len(upstreams)]
        try:
            async with request.app[CLIENT].request(
                request.method, upstream.url + request.rel_url.path, data=body or None, headers=headers
            ) as answer:
                upstream.requests += 1
                content = await answer.read()
                return web.Response(
                    body=content,
                    status=answer.status,
                    content_type=answer.content_type,
                    headers={"X-Upstream": upstream.name},
                )
        except aiohttp.ClientConnectorError:
            upstream.refused += 1
            log.warning("%s refused the connection; trying the next instance", upstream.name)
            continue
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            # The request may have reached the instance: never send it twice.
            log.error("%s failed: %s", upstream.name, type(error).__name__)
            return web.json_response({"error": "upstream_failed"}, status=502)
    return web.json_response({"error": "no_upstream"}, status=502)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    urls = [u.strip() for u in os.environ.get("RASA_UPSTREAMS", "").split(",") if u.strip()]
    port = int(os.environ.get("RASA_PORT", "5005"))
    app = create_app(urls, timeout=float(os.environ.get("RASA_TIMEOUT", "10")))
    log.info("proxy on 127.0.0.1:%d for %d Rasa instances", port, len(urls))
    # access_log off: a request line holds the path only, but keep the log to what is needed.
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
