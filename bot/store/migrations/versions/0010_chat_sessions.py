"""chat sessions, and TOTP codes used once

A chat cookie stops working when its session has ended (chat_sessions); a
staff TOTP code is accepted once (staff_users.totp_last_step).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'chat_sessions',
        sa.Column('conversation_id', sa.String(length=64), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('conversation_id'),
    )
    with op.batch_alter_table('staff_users') as batch:
        batch.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staff_users') as batch:
        batch.drop_column('totp_last_step')
    op.drop_table('chat_sessions')
