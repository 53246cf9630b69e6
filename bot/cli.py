"""`referral-assistant`: run, train, migrate, and read stored referrals.

    referral-assistant run                       start everything (see README)
    referral-assistant train [--force]           train if data changed
    referral-assistant migrate                   apply database migrations
    referral-assistant referrals export --format jsonl
    referral-assistant referrals show REFERENCE
"""

from __future__ import annotations

import argparse
import json
import sys

from bot.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="referral-assistant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="train if needed, migrate, start all processes")
    train = commands.add_parser("train", help="train the Rasa model if its inputs changed")
    train.add_argument("--force", action="store_true", help="train even if up to date")
    commands.add_parser("migrate", help="apply database migrations")
    referrals = commands.add_parser("referrals", help="read stored referrals")
    referral_commands = referrals.add_subparsers(dest="referrals_command", required=True)
    export = referral_commands.add_parser("export", help="every referral, one JSON per line")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    show = referral_commands.add_parser("show", help="one referral with its history")
    show.add_argument("reference")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        return _COMMANDS[args.command](args, settings)
    except ConfigError as err:
        print(f"Configuration problem: {err}", file=sys.stderr)
        return 2


def _run(args, settings: Settings) -> int:
    from bot import runner
    from bot.store.migrate import upgrade
    from bot.training import ensure_model

    settings.service_config()  # fail early on a bad service configuration
    print("Checking the model...", flush=True)
    model, trained = ensure_model()
    print(f"{'Trained' if trained else 'Up to date'}: {model.name}", flush=True)
    upgrade(settings.database_url)
    return runner.run(settings, model)


def _train(args, settings: Settings) -> int:
    from bot.training import ensure_model

    try:
        model, trained = ensure_model(force=args.force)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{'Trained' if trained else 'Up to date'}: {model}")
    return 0


def _migrate(args, settings: Settings) -> int:
    from bot.store.migrate import upgrade

    upgrade(settings.database_url)
    print("Database is up to date.")
    return 0


def _referrals(args, settings: Settings) -> int:
    from bot import services
    from bot.store.db import StoreUnavailable
    from bot.store.unit_of_work import UnitOfWork

    uow = UnitOfWork(settings.database_url)
    try:
        if args.referrals_command == "export":
            for record in services.export_records(uow):
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            return 0
        record = services.find_referral(uow, args.reference)
    except StoreUnavailable as err:
        print(f"The referral store is not available ({err}). Run `referral-assistant migrate`?",
              file=sys.stderr)
        return 1
    if record is None:
        print(f"No referral with reference {args.reference}.", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


_COMMANDS = {"run": _run, "train": _train, "migrate": _migrate, "referrals": _referrals}

if __name__ == "__main__":
    sys.exit(main())
