"""triage results

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 22:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('triage_reasons', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('redirect_to', sa.String(length=60), nullable=True))
        batch_op.add_column(
            sa.Column('repeat_referral', sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_column('repeat_referral')
        batch_op.drop_column('redirect_to')
        batch_op.drop_column('triage_reasons')
