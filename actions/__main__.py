"""`python -m actions [rasa-sdk options]`: the action server, ready before it listens.

Same options as `python -m rasa_sdk` (but --cors, --ssl-* and --auto-reload:
only Rasa on loopback calls it; see actions/server.py). The crisis detector
(the spaCy pipelines, about 5 s) is built first, so the
health check passes only when the server can answer at once; otherwise the
first person's first answer, which may be a crisis, would wait for it.
"""

import sys

# spaCy's thinc imports TensorFlow whenever it is installed (Rasa brings it in).
# Nothing in this process uses it, and it costs about 360 MB resident: an
# import of it here fails instead, which thinc expects.
sys.modules.setdefault("tensorflow", None)

import logging  # noqa: E402
import os  # noqa: E402

from rasa_sdk import utils  # noqa: E402
from rasa_sdk.constants import APPLICATION_ROOT_LOGGER_NAME  # noqa: E402
from rasa_sdk.endpoint import create_argument_parser  # noqa: E402

from actions.server import build_app  # noqa: E402
from bot import heap, logs  # noqa: E402
from bot.crisis import warm_up  # noqa: E402


def main() -> None:
    args = create_argument_parser().parse_args()
    token = os.environ.get("ACTION_SERVER_TOKEN", "")
    if not token:
        sys.exit("Refusing to start the action server: ACTION_SERVER_TOKEN is not set.")
    if os.environ.get("REFERRAL_PROFILE") == "production" and (args.loglevel or 0) == logging.DEBUG:
        sys.exit("Refusing to start the action server: production logs at INFO or above.")
    if logs.json_lines():  # deployed: JSON lines on stdout (bot/logs.py)
        logs.configure("actions", args.loglevel or logging.INFO)
    else:
        utils.configure_colored_logging(args.loglevel)
        utils.configure_file_logging(
            logging.getLogger(APPLICATION_ROOT_LOGGER_NAME),
            args.log_file,
            args.loglevel,
            args.logging_config_file,
        )
        utils.update_sanic_log_level()
    warm_up(semantic_layer=False)  # the NLU component's result carries the semantic layer's
    app = build_app(args.actions, token)
    heap.settle()
    app.run(os.environ.get("SANIC_HOST", "127.0.0.1"), args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
