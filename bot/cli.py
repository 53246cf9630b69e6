"""`referral-assistant`: run, train, migrate, and read stored referrals.

referral-assistant run                       start everything (see README)
referral-assistant train [--force]           train if data changed
referral-assistant migrate                   apply database migrations
referral-assistant referrals export --format jsonl
referral-assistant referrals show REFERENCE
referral-assistant crisis-check < messages.jsonl
referral-assistant directory lookup POSTAL_CODE
referral-assistant directory list
referral-assistant staff add USERNAME --role triage|admin [--password-stdin]
referral-assistant staff list | deactivate USERNAME | activate USERNAME
referral-assistant staff role USERNAME triage|admin | new-code USERNAME
referral-assistant keys new                  a new encryption key (first in line)
referral-assistant keys rotate               re-encrypt everything under the newest key
referral-assistant purge                     delete chat transcripts past their retention
referral-assistant secrets                   a new set of production secrets, as VARIABLE=value lines
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bot.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="referral-assistant", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="train if needed, migrate, start all processes")
    train = commands.add_parser(
        "train", help="train the crisis detector's heads and the Rasa model if their inputs changed"
    )
    train.add_argument("--force", action="store_true", help="train even if up to date")
    commands.add_parser("migrate", help="apply database migrations")
    referrals = commands.add_parser("referrals", help="read stored referrals")
    referral_commands = referrals.add_subparsers(dest="referrals_command", required=True)
    export = referral_commands.add_parser("export", help="every referral, one JSON per line")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    show = referral_commands.add_parser("show", help="one referral with its history")
    show.add_argument("reference")
    commands.add_parser(
        "crisis-check",
        help="assess JSON lines from stdin ({text, history?}); one JSON result per line, in order",
    )
    directory = commands.add_parser("directory", help="the crisis directory")
    directory_commands = directory.add_subparsers(dest="directory_command", required=True)
    lookup = directory_commands.add_parser("lookup", help="resources shown right now in an area")
    lookup.add_argument("postal_code")
    directory_commands.add_parser("list", help="the configured areas")
    staff = commands.add_parser("staff", help="staff accounts for the triage desk")
    staff_commands = staff.add_subparsers(dest="staff_command", required=True)
    add = staff_commands.add_parser("add", help="create an account (there is never a default one)")
    add.add_argument("username")
    add.add_argument("--role", choices=["triage", "admin"], required=True)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin instead of asking"
    )
    staff_commands.add_parser("list", help="every account, its role and whether it is active")
    for name, text in (
        ("deactivate", "stop an account signing in; its sessions end at once"),
        ("activate", "let a deactivated account sign in again"),
        ("new-code", "a new authenticator key (a lost phone); the old one stops working"),
    ):
        staff_commands.add_parser(name, help=text).add_argument("username")
    role = staff_commands.add_parser("role", help="change an account's role; its sessions end at once")
    role.add_argument("username")
    role.add_argument("role", choices=["triage", "admin"])
    keys = commands.add_parser("keys", help="encryption keys for personal data at rest")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser(
        "new", help="make a key; in development it goes first in the key file, else it is printed"
    )
    key_commands.add_parser("rotate", help="re-encrypt every stored value under the newest key")
    commands.add_parser(
        "purge", help="delete chat transcripts past their retention (the web service does it too)"
    )
    commands.add_parser(
        "secrets", help="print a new set of production secrets as VARIABLE=value lines (README Deployment)"
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        return _COMMANDS[args.command](args, settings)
    except ConfigError as err:
        print(f"Configuration problem: {err}", file=sys.stderr)
        return 2


def _run(args, settings: Settings) -> int:
    from bot.crisis.directory import DirectoryError
    from bot.crisis.directory import load as load_directory
    from bot.store.migrate import upgrade
    from bot.training import ensure_model

    config = settings.service_config()  # fail early on a bad service configuration
    problems = settings.production_problems()
    for problem in problems:
        print(f"Refusing to start the production profile: {problem}", file=sys.stderr)
    if problems:
        return 2
    try:
        directory = load_directory(profile=config.postal_format)
    except DirectoryError as err:
        print(f"Crisis directory problem: {err}", file=sys.stderr)
        return 2
    if directory.example or config.is_example:
        print(
            "WARNING: the service configuration or crisis directory is EXAMPLE data "
            "(fictional 555-01xx numbers). Replace it before real use.",
            flush=True,
        )
    print("Checking the model...", flush=True)
    model, trained = ensure_model()
    print(f"{'Trained' if trained else 'Up to date'}: {model.name}", flush=True)
    heads = _crisis_heads()
    if heads is None:
        return 2
    print(f"{'Trained' if heads[1] else 'Up to date'}: {heads[0].name}", flush=True)
    upgrade(settings.database_url)
    # The checks above loaded the training code, the migrations and the crisis
    # heads' corpus (about 80 MB resident); the supervisor needs none of it, so
    # this process becomes a fresh one that loads only the runner (about 37 MB),
    # with the same pid, environment and output.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "bot.runner", str(model)])


def _crisis_heads(force: bool = False):
    """The crisis detector's heads (bot/crisis/semantic.py), trained if the corpus
    or encoder changed; None, having said why, when the encoder cannot load."""
    from bot.crisis.encoder import EncoderUnavailable
    from bot.crisis.semantic import CorpusError, ensure_heads

    try:
        return ensure_heads(force=force)
    except (EncoderUnavailable, CorpusError) as err:
        print(f"Crisis detector problem: {err}", file=sys.stderr)
        return None


def _train(args, settings: Settings) -> int:
    from bot.training import ensure_model

    heads = _crisis_heads(force=args.force)
    if heads is None:
        return 1
    print(f"{'Trained' if heads[1] else 'Up to date'}: {heads[0]}")
    try:
        model, trained = ensure_model(force=args.force)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{'Trained' if trained else 'Up to date'}: {model}")
    return 0


def _migrate(args, settings: Settings) -> int:
    """The referral store's migrations. In production also the checks
    `run` makes before it starts anything (a deployed form has no runner:
    this is its migration step, before any other process), and Rasa's
    conversation tables, made once here: instances starting together race."""
    from bot.store.migrate import upgrade

    if settings.production:
        problems = settings.production_problems()
        for problem in problems:
            print(f"Refusing to migrate the production profile: {problem}", file=sys.stderr)
        if problems:
            return 1
        from bot.rasa_ext.tracker_store import create_tables

        create_tables(settings.tracker_url)
        print("Conversation tables are ready.")
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
        print(
            f"The referral store is not available ({err}). Run `referral-assistant migrate`?", file=sys.stderr
        )
        return 1
    if record is None:
        print(f"No referral with reference {args.reference}.", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


def _crisis_check(args, settings: Settings) -> int:
    from bot.crisis import assess

    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, history = item["text"], item.get("history") or []
            if not isinstance(text, str) or not isinstance(history, list):
                raise TypeError("text must be a string and history a list")
        except (ValueError, KeyError, TypeError) as err:
            out = {"error": f"line {number}: {type(err).__name__}: {err}"}
        else:
            result = assess(text, [str(h) for h in history]).as_dict()
            out = {key: result[key] for key in ("level", "subject", "categories", "evidence")}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


def _directory(args, settings: Settings) -> int:
    from bot.crisis import directory as crisis_directory
    from bot.validators import normalise_postal_code

    config = settings.service_config()
    directory = crisis_directory.load(profile=config.postal_format)
    if args.directory_command == "list":
        areas = [
            {
                "id": a.id,
                "name": a.name,
                "postal_prefixes": list(a.postal_prefixes),
                "call": a.call,
                "text": a.text,
                "hours": a.hours_text,
                "out_of_hours": a.out_of_hours,
            }
            for a in directory.areas
        ]
        print(
            json.dumps(
                {
                    "profile": directory.profile,
                    "version": directory.version,
                    "example": directory.example,
                    "areas": areas,
                },
                indent=2,
            )
        )
        return 0
    postal = normalise_postal_code(args.postal_code, config.postal_format)
    if postal is None:
        print(
            f"Not a valid postal code for the {config.postal_format.upper()} profile: {args.postal_code}",
            file=sys.stderr,
        )
        return 2
    area = directory.area_for(postal)
    print(
        json.dumps(
            {
                "postal_code": postal,
                "area": area.id if area else None,
                "example": directory.example,
                "resources": directory.resources("crisis", postal),
            },
            indent=2,
        )
    )
    return 0


def _staff(args, settings: Settings) -> int:
    from bot import staff
    from bot.store.db import StoreUnavailable
    from bot.store.unit_of_work import UnitOfWork

    store = UnitOfWork(settings.database_url)
    try:
        if args.staff_command == "add":
            return _staff_add(args, store)
        if args.staff_command == "list":
            for account in staff.accounts(store):
                state = "active" if account["active"] else "deactivated"
                code = "" if account["second_factor"] else ", no authenticator key (run new-code)"
                print(f"{account['username']}\t{account['role']}\t{state}{code}")
            return 0
        name = args.username.strip().lower()
        if args.staff_command == "new-code":
            _print_key(staff.new_code(store, name), name)
            return 0
        if args.staff_command == "role":
            ended = staff.set_role(store, name, args.role)
            print(f"{name} is now {args.role}; {ended} session(s) ended.")
        else:
            ended = staff.set_active(store, name, args.staff_command == "activate")
            print(f"{name} is {args.staff_command}d; {ended} session(s) ended.")
        return 0
    except staff.StaffError as err:
        done = "created" if args.staff_command == "add" else "changed"
        print(f"{err} Nothing was {done}.", file=sys.stderr)
        return 1
    except StoreUnavailable as err:
        print(
            f"The referral store is not available ({err}). Run `referral-assistant migrate`?", file=sys.stderr
        )
        return 1


def _staff_add(args, store) -> int:
    import getpass

    from bot import staff

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Same password again: ") != password:
            print("The two passwords differ. Nothing was created.", file=sys.stderr)
            return 1
    name = args.username.strip().lower()
    secret = staff.add_staff(store, args.username, password, args.role)
    print(f"Created {args.role} account {name}.")
    _print_key(secret, name)
    return 0


def _print_key(secret: str, name: str) -> None:
    from bot import staff

    # Shown once: it goes into an authenticator app now.
    print("Staff sign in with a code from an authenticator app. Add this account to the app now:")
    print(f"  key: {secret}")
    print(f"  or:  {staff.provisioning_uri(secret, name)}")


def _keys(args, settings: Settings) -> int:
    import os

    from bot import crypto, keys
    from bot.store.db import StoreUnavailable

    if args.keys_command == "new":
        key = crypto.new_key()
        if settings.production or os.environ.get(crypto.KEYS_VARIABLE):
            print(key)
            print(
                f"Put it first in {crypto.KEYS_VARIABLE} (comma between keys), restart the services, "
                "then run `referral-assistant keys rotate`.",
                file=sys.stderr,
            )
            return 0
        path = settings.var_dir / "encryption_keys"
        old = [k.decode() for k in settings.encryption_keys()]  # makes the file if there is none
        path.write_text("\n".join([key, *old]) + "\n")
        print(
            f"Added a new first key to {path}. "
            "Restart the services, then run `referral-assistant keys rotate`."
        )
        return 0
    try:
        counts = keys.rotate_store(settings.database_url)
        counts["chat events"] = keys.rotate_tracker(settings.tracker_url)
    except crypto.DecryptError as err:
        print(f"{err}. Nothing was changed in that table; are all keys still listed?", file=sys.stderr)
        return 1
    except StoreUnavailable as err:
        print(f"The referral store is not available ({err}).", file=sys.stderr)
        return 1
    for table, count in counts.items():
        print(f"{table}: {count} values re-encrypted")
    print("Every value is now under the first key. Older keys can be removed after the next restart.")
    return 0


def _purge(args, settings: Settings) -> int:
    from bot import retention
    from bot.store.db import StoreUnavailable
    from bot.store.unit_of_work import UnitOfWork

    try:
        purged = retention.purge(
            UnitOfWork(settings.database_url), settings.tracker_url, settings.retention()
        )
    except StoreUnavailable as err:
        print(f"A store is not available ({err}). Nothing was deleted.", file=sys.stderr)
        return 1
    print(json.dumps(purged.as_dict()))
    return 0


def _secrets(args, settings: Settings) -> int:
    import secrets

    from bot import crypto

    for name in ("SESSION_SECRET", "PERSON_KEY_SECRET", "GATEWAY_TOKEN", "ACTION_SERVER_TOKEN"):
        print(f"{name}={secrets.token_urlsafe(32)}")
    print(f"{crypto.KEYS_VARIABLE}={crypto.new_key()}")
    return 0


_COMMANDS = {
    "run": _run,
    "train": _train,
    "migrate": _migrate,
    "referrals": _referrals,
    "crisis-check": _crisis_check,
    "directory": _directory,
    "staff": _staff,
    "keys": _keys,
    "purge": _purge,
    "secrets": _secrets,
}

if __name__ == "__main__":
    sys.exit(main())
