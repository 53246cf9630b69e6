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
    assert staff.add_staff(UnitOfWork(database_url), "Ana", PASSWORD, "triage") is None
    with pytest.raises(staff.StaffError, match="already an account"):
        staff.add_staff(UnitOfWork(database_url), "ana", PASSWORD, "triage")
    with UnitOfWork(database_url) as uow:
        [user] = uow.session.query(StaffUser).all()
        assert user.username == "ana" and PASSWORD not in user.password_hash


def test_sign_in_checks_the_password_and_for_admins_the_second_factor(database_url):
    staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    secret = staff.add_staff(UnitOfWork(database_url), "ada", PASSWORD, "admin")
    assert staff.authenticate(UnitOfWork(database_url), "tom", PASSWORD).role == "triage"
    assert staff.authenticate(UnitOfWork(database_url), "tom", "wrong password!!") is None
    assert staff.authenticate(UnitOfWork(database_url), "nobody", PASSWORD) is None
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD) is None  # no code
    wrong = str((int(staff.totp(secret)) + 500_000) % 1_000_000).zfill(6)
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, wrong) is None
    assert staff.authenticate(UnitOfWork(database_url), "ada", PASSWORD, staff.totp(secret)).role == "admin"


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


def test_an_old_scrypt_hash_still_signs_in_and_is_replaced_by_argon2id(database_url):
    from bot.store.models import StaffUser
    from bot.store.unit_of_work import UnitOfWork

    old = staff._scrypt_hash(PASSWORD)
    assert staff.verify_password(PASSWORD, old) and staff.needs_rehash(old)
    with UnitOfWork(database_url) as uow:
        uow.session.add(StaffUser(username="olga", password_hash=old, role="triage"))
        uow.commit()
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD + "!") is None
    with UnitOfWork(database_url) as uow:
        assert uow.session.query(StaffUser).filter_by(username="olga").one().password_hash == old
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD) is not None
    with UnitOfWork(database_url) as uow:
        upgraded = uow.session.query(StaffUser).filter_by(username="olga").one().password_hash
    assert upgraded.startswith("$argon2id$") and not staff.needs_rehash(upgraded)
    assert staff.authenticate(UnitOfWork(database_url), "olga", PASSWORD) is not None


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
    with UnitOfWork(database_url) as uow:
        uow.session.query(StaffUser).filter_by(username="tom").one().active = False
        uow.session.query(StaffUser).filter_by(username="ann").one().role = "admin"
        uow.commit()
    assert staff.current(UnitOfWork(database_url), tom) is None
    assert staff.current(UnitOfWork(database_url), ann) is None  # signs in again, with the new role's checks


def test_a_session_ends_after_12_hours_however_active(database_url):
    import datetime as dt

    from bot.store.models import utcnow

    staff.add_staff(UnitOfWork(database_url), "tom", PASSWORD, "triage")
    token = _session_for(database_url, "tom")
    start = utcnow()
    for minutes in range(10, 12 * 60, 10):  # a request every 10 minutes, all day
        assert staff.current(UnitOfWork(database_url), token, start + dt.timedelta(minutes=minutes))
    assert staff.current(UnitOfWork(database_url), token, start + dt.timedelta(hours=12, minutes=5)) is None
