"""crisis events sealed: level, subject, categories and resources hold Fernet tokens

What kind of crisis was shown is health information; only the conversation
id, the time and the detector version stay in clear. Existing rows are
encrypted in place; downgrading decrypts them back.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:05:00
"""
import json

from alembic import op
import sqlalchemy as sa

from bot import crypto


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_COLUMNS = {
    'level': sa.String(length=20),
    'subject': sa.String(length=20),
    'categories': sa.JSON(),
    'resources': sa.JSON(),
}


def _table(types):
    return sa.table('crisis_events', sa.column('id', sa.Integer()), *(sa.column(n, t) for n, t in types.items()))


def _rows(types) -> list[dict]:
    table = _table(types)
    return [dict(row._mapping) for row in op.get_bind().execute(sa.select(table))]


def _write(types, rows) -> None:
    table = _table(types)
    for row in rows:
        values = {name: row[name] for name in types}
        op.get_bind().execute(sa.update(table).where(table.c.id == row['id']).values(**values))


def upgrade() -> None:
    rows = _rows(_COLUMNS)
    with op.batch_alter_table('crisis_events', schema=None) as batch_op:
        for name, old_type in _COLUMNS.items():
            batch_op.alter_column(name, existing_type=old_type, type_=sa.Text())
    keyring = crypto.keyring()
    sealed = [
        {'id': r['id'], **{n: keyring.encrypt(json.dumps(r[n]).encode()) for n in _COLUMNS}} for r in rows
    ]
    _write({name: sa.Text() for name in _COLUMNS}, sealed)


def downgrade() -> None:
    keyring = crypto.keyring()
    rows = _rows({name: sa.Text() for name in _COLUMNS})
    plain = [{'id': r['id'], **{n: json.loads(keyring.decrypt(r[n])) for n in _COLUMNS}} for r in rows]
    as_text = [
        {'id': r['id'], **{n: json.dumps(r[n]) if isinstance(t, sa.JSON) else r[n] for n, t in _COLUMNS.items()}}
        for r in plain
    ]
    _write({name: sa.Text() for name in _COLUMNS}, as_text)
    with op.batch_alter_table('crisis_events', schema=None) as batch_op:
        for name, old_type in _COLUMNS.items():
            batch_op.alter_column(
                name,
                existing_type=sa.Text(),
                type_=old_type,
                postgresql_using=f'{name}::{old_type.compile(dialect=op.get_bind().dialect)}',
            )
