"""`python -m bot.web`: serve the referral service on 127.0.0.1:WEB_PORT."""

import logging

from aiohttp import web

from bot.config import Settings
from bot.web.app import create_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    web.run_app(create_app(settings), host=settings.host, port=settings.web_port, access_log=None, print=None)


if __name__ == "__main__":
    main()
