"""`python -m actions [rasa-sdk options]`: the action server, ready before it listens.

Same options as `python -m rasa_sdk`. The crisis detector (spaCy pipelines
and the classifier, about 5 s) is built first, so the health check passes
only when the server can answer at once; otherwise the first person's first
answer, which may be a crisis, would wait for it.
"""

from rasa_sdk.__main__ import main_from_args
from rasa_sdk.endpoint import create_argument_parser

from bot.crisis import warm_up


def main() -> None:
    args = create_argument_parser().parse_args()
    warm_up()
    main_from_args(args)


if __name__ == "__main__":
    main()
