"""`python -m bot.web`: serve the referral service on 127.0.0.1:WEB_PORT."""

import sys

# spaCy's thinc imports TensorFlow whenever it is installed (Rasa brings it in).
# Nothing in this process uses it, and it costs about 360 MB resident: an
# import of it here fails instead, which thinc expects.
sys.modules.setdefault("tensorflow", None)

import logging  # noqa: E402

from aiohttp import web  # noqa: E402

from bot import heap, logs  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.crisis import warm_up  # noqa: E402
from bot.web.app import create_app  # noqa: E402


def main() -> None:
    # INFO, never DEBUG: nothing a person types is logged at any level here.
    logs.configure("web", logging.INFO)
    settings = Settings.from_env()
    from bot.crisis.encoder import EncoderUnavailable
    from bot.crisis.semantic import CorpusError, check_available

    try:
        # The gateway checks for a crisis itself only when Rasa cannot answer:
        # the patterns are built now, the encoder (about 120 MB) is loaded on
        # the first such message, and must be there to load.
        warm_up(semantic_layer=False)
        check_available()
    except (EncoderUnavailable, CorpusError) as err:
        sys.exit(f"Refusing to start the web service: the crisis detector cannot load: {err}")
    app = create_app(settings)
    heap.settle()
    web.run_app(app, host=settings.host, port=settings.web_port, access_log=None, print=None)


if __name__ == "__main__":
    main()
