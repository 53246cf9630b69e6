"""Staff accounts: the KDF, TOTP (RFC 6238 test vectors), accounts and the CLI."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bot import staff
from bot.store.models import StaffUser
from bot.store.unit_of_work import UnitOfWork

PASSWORD = "correct horse battery staple"


def test_passwords_are_salted_argon2id_hashes_that_verify():
    first, second = staff.hash_password(PASSWORD), staff.hash_password(PASSWORD)
    assert first.startswith("$argon2id$") and first != second and PASSWORD not in first
    assert "m=65536,t=3,p=4" in first  # at or above OWASP's floor (19 MiB, t=2, p=1)
    assert staff.verify_password(PASSWORD, first) and staff.verify_password(PASSWORD, second)
    assert not staff.verify_password(PASSWORD + "!", first)
    assert not staff.verify_password(PASSWORD, "md5$whatever")


@pytest.mark.parametrize(
    ("at", "code"),
    # RFC 6238 appendix B, SHA-1, key "12345678901234567890", last 6 digits.
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_totp_matches_the_rfc_6238_test_vectors(at, code):
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert staff.totp(secret, at) == code
    assert staff.verify_totp(secret, code, at + 30)  # one step of clock drift is accepted
    assert not staff.verify_totp(secret, code, at + 95)


def test_accounts_need_a_real_password_and_a_known_role_and_are_never_duplicated(database_url):
    with pytest.raises(staff.StaffError, match="at least 12"):
        staff.add_staff(UnitOfWork(database_url), "ana", "short", "triage")
    with pytest.raises(staff.StaffError, match="role"):
        staff.add_staff(UnitOfWork(database_url), "ana", PASSWORD, "superuser")
    assert staff.add_staff(UnitOfWork(database_url), "Ana", PASSWORD, "triage")  # its TOTP key
    with pytest.raises(staff.StaffError, match="already an account"):
        staff.add_staff(UnitOfWork(database_url), "ana", PASSWORD, "triage")
    with UnitOfWork(database_url) as uow:
        [user] = uow.session.query(StaffUser).all()
        assert user.username == "ana" and PASSWORD not in user.password_hash


def test_sign_in_checks_the_password_and_the_second_factor_for_every_role(database_url):
    tom = staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    ada = staff.add_staff(UnitOfWork(database_url), "ada", PASSWORD, "admin")
    assert tom and ada and tom != ada  # every account that can read referrals has a key
    assert staff.authenticate(UnitOfWork(database_url), "tom", PASSWORD) is None  # no code
    assert staff.authenticate(UnitOfWork(database_url), "tom", "wrong password!!", staff.totp(tom)) is None
    assert staff.authenticate(UnitOfWork(database_url), "tom", PASSWORD, staff.totp(tom)).role == "triage"
    assert staff.authenticate(UnitOfWork(database_url), "nobody", PASSWORD, staff.totp(tom)) is None
    assert (
        staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, staff.totp(tom)) is None
    )  # tom's code
    wrong = str((int(staff.totp(ada)) + 500_000) % 1_000_000).zfill(6)
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, wrong) is None
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, staff.totp(ada)).role == "admin"


def test_failed_sign_ins_are_audited_without_what_was_typed(database_url):
    tom = staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    staff.authenticate(UnitOfWork(database_url), "tom", "wrong password!!", staff.totp(tom))
    wrong = str((int(staff.totp(tom)) + 500_000) % 1_000_000).zfill(6)
    staff.authenticate(UnitOfWork(database_url), "Tom", PASSWORD, wrong)
    staff.authenticate(UnitOfWork(database_url), "my password 123", PASSWORD, "123456")  # a slip of the keys
    trail = staff.audit_trail(UnitOfWork(database_url))
    assert [(e["who"], e["action"], e["detail"]) for e in trail] == [
        ("cli", "add_account", {"account": "tom", "role": "triage"}),
        ("tom", "sign_in_failed", {"reason": "password"}),
        ("tom", "sign_in_failed", {"reason": "code"}),
        ("-", "sign_in_failed", {"reason": "unknown_account"}),
    ]


def test_an_account_made_before_every_role_had_a_key_signs_in_after_new_code(database_url):
    with UnitOfWork(database_url) as uow:
        uow.session.add(StaffUser(username="old", password_hash=staff.hash_password(PASSWORD), role="triage"))
        uow.commit()
    assert staff.authenticate(UnitOfWork(database_url), "old", PASSWORD, "123456") is None
    secret = staff.new_code(UnitOfWork(database_url), "old")
    assert staff.authenticate(UnitOfWork(database_url), "old", PASSWORD, staff.totp(secret)) is not None


def test_the_cli_creates_the_first_admin_and_shows_the_key_once(tmp_path):
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    env = {"DATABASE_URL": url, "REFERRAL_VAR_DIR": str(tmp_path), "PATH": ""}
    run = [sys.executable, "-m", "bot.cli", "staff", "add", "ada", "--role", "admin", "--password-stdin"]
    done = subprocess.run(run, input=PASSWORD + "\n", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "Created admin account ada." in done.stdout and "otpauth://totp/" in done.stdout
    again = subprocess.run(run, input=PASSWORD + "\n", capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "already an account" in again.stderr
    weak = subprocess.run(
        run[:5] + ["bo", "--role", "triage", "--password-stdin"],
        input="password\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert weak.returncode == 1 and "Nothing was created" in weak.stderr


KEY = staff.new_totp_secret()


def code(secret: str, later: bool = False) -> str:
    """This step's code, or the next step's (accepted once for clock drift)."""
    return staff.totp(secret, time.time() + (staff.TOTP_STEP if later else 0))


def test_an_old_scrypt_hash_still_signs_in_and_is_replaced_by_argon2id(database_url):
    from bot.store.models import StaffUser
    from bot.store.unit_of_work import UnitOfWork

    old = staff._scrypt_hash(PASSWORD)
    assert staff.verify_password(PASSWORD, old) and staff.needs_rehash(old)
    with UnitOfWork(database_url) as uow:
        uow.session.add(StaffUser(username="olga", password_hash=old, role="triage", totp_secret=KEY))
        uow.commit()
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD + "!", code(KEY)) is None
    with UnitOfWork(database_url) as uow:
        assert uow.session.query(StaffUser).filter_by(username="olga").one().password_hash == old
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD, code(KEY)) is not None
    with UnitOfWork(database_url) as uow:
        upgraded = uow.session.query(StaffUser).filter_by(username="olga").one().password_hash
    assert upgraded.startswith("$argon2id$") and not staff.needs_rehash(upgraded)
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD, code(KEY, later=True)) is not None


def test_a_totp_code_works_once(database_url):
    secret = staff.add_staff(UnitOfWork(database_url), "ada", PASSWORD, "admin")
    code = staff.totp(secret)
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, code) is not None
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, code) is None  # replayed
    earlier = staff.totp(secret, time.time() - 30)  # the step before is older still: refused too
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, earlier) is None


def _session_for(database_url, username):
    with UnitOfWork(database_url) as uow:
        user = uow.session.query(StaffUser).filter_by(username=username).one()
        uow.session.expunge(user)
    return staff.start_session(UnitOfWork(database_url), user)


def test_a_session_ends_when_the_account_is_deactivated_or_its_role_changes(database_url):
    staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    staff.add_staff(UnitOfWork(database_url), "ann", PASSWORD, "triage")
    tom, ann = _session_for(database_url, "tom"), _session_for(database_url, "ann")
    assert staff.current(UnitOfWork(database_url), tom) == staff.SignedIn("tom", "triage")
    with UnitOfWork(database_url) as uow:  # changed behind the desk's back: each request re-checks
        uow.session.query(StaffUser).filter_by(username="tom").one().active = False
        uow.session.query(StaffUser).filter_by(username="ann").one().role = "admin"
        uow.commit()
    assert staff.current(UnitOfWork(database_url), tom) is None
    assert staff.current(UnitOfWork(database_url), ann) is None  # signs in again, with the new role's checks


def test_deactivating_or_changing_a_role_ends_sessions_and_is_audited_with_the_change(database_url):
    staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    first, second = _session_for(database_url, "tom"), _session_for(database_url, "tom")
    assert staff.set_role(UnitOfWork(database_url), "tom", "admin") == 2
    assert staff.current(UnitOfWork(database_url), first) is None
    third = _session_for(database_url, "tom")
    assert staff.set_active(UnitOfWork(database_url), "TOM", False) == 1
    assert staff.current(UnitOfWork(database_url), third) is None and second
    with pytest.raises(staff.StaffError, match="no account called bob"):
        staff.set_active(UnitOfWork(database_url), "bob", False)
    actions = [(e["action"], e["detail"]) for e in staff.audit_trail(UnitOfWork(database_url))]
    assert ("change_role", {"account": "tom", "role": "admin", "from": "triage"}) in actions
    assert ("deactivate", {"account": "tom"}) in actions


def test_the_cli_deactivates_changes_roles_and_lists_accounts(tmp_path):
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    env = {"DATABASE_URL": url, "REFERRAL_VAR_DIR": str(tmp_path), "PATH": ""}

    def cli(*args, stdin=""):
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "staff", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
        )

    made = cli("add", "tom", "--role", "triage", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0 and "otpauth://totp/" in made.stdout  # triage accounts get a key too
    token = _session_for(url, "tom")
    assert cli("deactivate", "tom").stdout.strip() == "tom is deactivated; 1 session(s) ended."
    assert staff.current(UnitOfWork(url), token) is None
    assert cli("list").stdout.split("\n")[0] == "tom\ttriage\tdeactivated"
    assert cli("activate", "tom").returncode == 0
    assert cli("role", "tom", "admin").stdout.startswith("tom is now admin")
    new = cli("new-code", "tom")
    secret = new.stdout.split("key: ")[1].split()[0]
    assert staff.authenticate(UnitOfWork(url), "tom", PASSWORD, staff.totp(secret)).role == "admin"
    missing = cli("deactivate", "nobody")
    assert missing.returncode == 1 and "no account called nobody" in missing.stderr


def test_a_session_ends_after_12_hours_however_active(database_url):
    import datetime as dt

    from bot.store.models import utcnow

    staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    token = _session_for(database_url, "tom")
    start = utcnow()
    for minutes in range(10, 12 * 60, 10):  # a request every 10 minutes, all day
        assert staff.current(UnitOfWork(database_url), token, start + dt.timedelta(minutes=minutes))
    assert staff.current(UnitOfWork(database_url), token, start + dt.timedelta(hours=12, minutes=5)) is None
