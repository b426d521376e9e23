"""Operators sign in with a user name and password: sessions, and failed sign-ins for limits.

`operator` gains a user name (unique; none for an operator with only a bearer token), a scrypt
password hash and when it was set, the desk language, when its bearer token expires (a year
from this migration for every existing operator) and the last sign-in. `operator_session` holds
sessions (the secret only hashed); `sign_in_failure` counts failures per account and address
in the database, so replicas share the counts.

Additive only: a replica still running the previous version reads and writes `operator` as
before (every new column is nullable or has a default; a token it creates without an expiry
expires a year after it was created) and never touches the new tables.

Written by hand and self-contained. Chained after 0008 (replica leases).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

EXISTING_TOKEN_DAYS = 365


def upgrade() -> None:
    op.add_column("operator", sa.Column("user_name", sa.String(64), nullable=True))
    op.add_column("operator", sa.Column("password_hash", sa.String(256), nullable=True))
    op.add_column(
        "operator", sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("operator", sa.Column("locale", sa.String(16), nullable=False, server_default=""))
    op.add_column(
        "operator", sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "operator", sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_operator_user_name", "operator", ["user_name"], unique=True)
    expires = datetime.now(UTC) + timedelta(days=EXISTING_TOKEN_DAYS)
    if op.get_bind().dialect.name == "sqlite":
        expires = expires.replace(tzinfo=None)  # how the node stores UTC on SQLite
    operator = sa.table("operator", sa.column("token_expires_at", sa.DateTime(timezone=True)))
    op.execute(
        operator.update()
        .where(operator.c.token_expires_at.is_(None))
        .values(token_expires_at=expires)
    )

    op.create_table(
        "operator_session",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.String(64), nullable=False),
        sa.Column("secret_salt", sa.LargeBinary(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.String(32), nullable=True),
        sa.CheckConstraint(
            "ended_reason IN ('signed_out', 'operator_disabled', 'password_reset')",
            name="ck_operator_session_ended_reason",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.operator_id"],
            name="fk_operator_session_operator_id_operator",
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_operator_session"),
    )
    op.create_index("ix_operator_session_operator_id", "operator_session", ["operator_id"])
    op.create_index("ix_operator_session_expires_at", "operator_session", ["expires_at"])

    op.create_table(
        "sign_in_failure",
        sa.Column("failure_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("limit_key", sa.String(80), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("failure_id", name="pk_sign_in_failure"),
    )
    op.create_index("ix_sign_in_failure_failed_at", "sign_in_failure", ["failed_at"])
    op.create_index(
        "ix_sign_in_failure_limit_key_failed_at", "sign_in_failure", ["limit_key", "failed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_sign_in_failure_limit_key_failed_at", table_name="sign_in_failure")
    op.drop_index("ix_sign_in_failure_failed_at", table_name="sign_in_failure")
    op.drop_table("sign_in_failure")
    op.drop_index("ix_operator_session_expires_at", table_name="operator_session")
    op.drop_index("ix_operator_session_operator_id", table_name="operator_session")
    op.drop_table("operator_session")
    op.drop_index("ix_operator_user_name", table_name="operator")
    with op.batch_alter_table("operator") as batch:
        for column in (
            "last_sign_in_at",
            "token_expires_at",
            "locale",
            "password_set_at",
            "password_hash",
            "user_name",
        ):
            batch.drop_column(column)
