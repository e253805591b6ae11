"""The warehouse roles dbt makes (dbt_brain/macros/roles.sql), and their logins.

``brain_writer`` owns Brain's schemas (the flows connect as it or as a member of it);
``brain_bi`` reads the marts and nothing else. dbt creates both NOLOGIN on every build;
:func:`enable_login` gives one of them a password so a BI tool or a worker can connect.
The password is hashed here (SCRAM-SHA-256, by libpq) and only the verifier is sent, so
it never appears in the server's statement log.
"""

from __future__ import annotations

from psycopg import sql

from brain_lib.errors import ConfigError
from brain_lib.warehouse import open_connection

ROLES = ("brain_writer", "brain_bi")
#: the setting (environment variable) each role's password comes from
PASSWORD_SETTING = {"brain_bi": "BRAIN_BI_PASSWORD", "brain_writer": "BRAIN_WRITER_PASSWORD"}
MIN_PASSWORD_LENGTH = 12


def enable_login(dsn: str, role: str, password: str) -> None:
    """Let ``role`` (one of :data:`ROLES`) log in with ``password``.

    Raises ConfigError, changing nothing, for another role, a password shorter than
    :data:`MIN_PASSWORD_LENGTH`, or a role dbt has not made yet.
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: Brain's roles are {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"{PASSWORD_SETTING[role]} is too short: {role} needs at least "
            f"{MIN_PASSWORD_LENGTH} characters"
        )
    with open_connection(dsn, autocommit=True) as conn:
        if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
            raise ConfigError(
                f"role {role} does not exist in this warehouse yet: run `brain dbt build` "
                "(dbt makes the roles, dbt_brain/macros/roles.sql)"
            )
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
        conn.execute(
            sql.SQL("alter role {} login password {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())
            )
        )
