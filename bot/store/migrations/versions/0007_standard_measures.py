"""standard measures (PHQ-9, GAD-7)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 22:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ITEMS = [f"phq9_{i}" for i in range(1, 10)] + [f"gad7_{i}" for i in range(1, 8)]


def upgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        for name in ITEMS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('phq9_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('phq9_severity', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('gad7_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('gad7_severity', sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        for name in ('gad7_severity', 'gad7_score', 'phq9_severity', 'phq9_score', *reversed(ITEMS)):
            batch_op.drop_column(name)
