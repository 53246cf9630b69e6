"""encryption at rest: personal and health columns hold Fernet tokens

Existing values are encrypted in place with the configured key
(REFERRAL_ENCRYPTION_KEYS, or the development key). Downgrading decrypts
them back to their old types.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 09:00:00
"""
import datetime as dt
import json

from alembic import op
import sqlalchemy as sa

from bot import crypto, dataset


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_TYPES = {"text": sa.Text, "date": sa.Date, "bool": sa.Boolean, "int": sa.Integer}


def _columns() -> dict[str, dict[str, sa.types.TypeEngine]]:
    """Each encrypted column with its type before this revision."""
    spec = dataset.load()
    referrals = {field.name: _TYPES[field.type]() for field in spec.person_fields}
    referrals.update(
        triage_reasons=sa.JSON(),
        phq9_score=sa.Integer(),
        phq9_severity=sa.String(length=30),
        gad7_score=sa.Integer(),
        gad7_severity=sa.String(length=30),
    )
    return {
        'referrals': referrals,
        'referrers': {field.name: _TYPES[field.type]() for field in spec.referrer_fields},
        'referral_events': {'detail': sa.JSON()},
    }


def _encrypt(value, _old_type=None):
    if value is None:
        return None
    if isinstance(value, dt.date):
        value = value.isoformat()
    return crypto.keyring().encrypt(json.dumps(value).encode())


def _decrypt(value, old_type):
    if value is None:
        return None
    plain = json.loads(crypto.keyring().decrypt(value))
    if isinstance(old_type, sa.Date) and isinstance(plain, str):
        return dt.date.fromisoformat(plain)
    return plain


def _as_text(value, old_type):
    if value is None:
        return None
    if isinstance(old_type, sa.JSON):
        return json.dumps(value)
    if isinstance(old_type, sa.Boolean):
        return 'true' if value else 'false'
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _rows(table: str, columns: dict[str, sa.types.TypeEngine]) -> list[dict]:
    reader = sa.table(table, sa.column('id', sa.Integer()), *(sa.column(n, t) for n, t in columns.items()))
    return [dict(row._mapping) for row in op.get_bind().execute(sa.select(reader))]


def _write(table: str, columns: dict[str, sa.types.TypeEngine], rows: list[dict]) -> None:
    writer = sa.table(table, sa.column('id', sa.Integer()), *(sa.column(n, t) for n, t in columns.items()))
    for row in rows:
        values = {name: row[name] for name in columns}
        op.get_bind().execute(sa.update(writer).where(writer.c.id == row['id']).values(**values))


def _convert(rows: list[dict], columns: dict[str, sa.types.TypeEngine], convert) -> list[dict]:
    return [{'id': row['id'], **{n: convert(row[n], columns[n]) for n in columns}} for row in rows]


def upgrade() -> None:
    for table, columns in _columns().items():
        rows = _rows(table, columns)
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, old_type in columns.items():
                batch_op.alter_column(name, existing_type=old_type, type_=sa.Text())
        _write(table, {name: sa.Text() for name in columns}, _convert(rows, columns, _encrypt))


def downgrade() -> None:
    for table, columns in _columns().items():
        rows = _rows(table, {name: sa.Text() for name in columns})
        plain = _convert(rows, columns, _decrypt)
        # Each column first holds its value as text in the form its old type casts from.
        _write(table, {name: sa.Text() for name in columns}, _convert(plain, columns, _as_text))
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, old_type in columns.items():
                batch_op.alter_column(
                    name,
                    existing_type=sa.Text(),
                    type_=old_type,
                    postgresql_using=f'{name}::{old_type.compile(dialect=op.get_bind().dialect)}',
                )
        _write(table, columns, plain)
