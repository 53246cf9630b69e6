"""easy read, resume codes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('easy_read', sa.Boolean(), nullable=True))
    op.create_table(
        'resume_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('conversation_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code_hash'),
    )
    with op.batch_alter_table('resume_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resume_codes_conversation_id'), ['conversation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('resume_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resume_codes_conversation_id'))
    op.drop_table('resume_codes')
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_column('easy_read')
