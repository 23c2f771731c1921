"""Least-privilege PostgreSQL roles: an owner that migrates, an app role that only reads and
writes rows (web, worker, beat).

The app role owns nothing, so it can never `ALTER TABLE ... DISABLE TRIGGER`, `DROP` or
`TRUNCATE` anything (those need ownership or the TRUNCATE/TRIGGER privileges, which it is
never given). On the ledger's append-only tables it has SELECT and INSERT only, so an UPDATE
or DELETE is refused by PostgreSQL's privileges before any trigger runs; the triggers stay as
a second wall (against the owner and superusers).

The balance checkpoints (`ledger_checkpointrun`, `ledger_checkpoint`) are derived data: the
app role inserts, updates and deletes them (the default row privileges), and is a member of
`pg_read_all_stats` so that the checkpoint task sees every session's open transaction.

`roles_apply()` converges: run it any number of times, after every migration (new tables get
their grants), and whatever extra privilege someone granted by hand is revoked.
"""

from dataclasses import dataclass

from psycopg import sql

from ledger.pgsql import APPEND_ONLY_TABLES

# Rows are inserted and updated but never deleted (balances, accounts: see ledger.pgsql).
NO_DELETE_TABLES = ("ledger_account", "ledger_balance")


@dataclass(frozen=True)
class RolesReport:
    owner: str
    app: str
    tables: int
    append_only: list[str]
    reassigned: int


def _role_ensure(cursor, name: str, password: str | None) -> None:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
    verb = "ALTER" if cursor.fetchone() else "CREATE"
    # NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION: whatever it had before.
    stmt = sql.SQL(
        "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    ).format(sql.SQL(verb), sql.Identifier(name))
    if password:
        stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(password))
    cursor.execute(stmt)


def roles_apply(
    cursor,  # type: ignore[no-untyped-def]
    *,
    database: str,
    owner: str,
    app: str,
    owner_password: str | None = None,
    app_password: str | None = None,
    schema: str = "public",
) -> RolesReport:
    """Create/update both roles and every grant on `database` (the cursor's database,
    connected as a superuser or a role with CREATEROLE that owns the objects)."""
    if owner == app:
        raise ValueError("the owner and the app role must differ")
    cursor.execute(
        "SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    current, is_admin = cursor.fetchone()
    reassigned = 0
    if is_admin:
        reassigned = _roles_and_ownership(
            cursor,
            database=database,
            owner=owner,
            app=app,
            owner_password=owner_password,
            app_password=app_password,
            schema=schema,
        )
    elif current != owner:
        raise PermissionError(
            f"db_roles runs as a superuser/CREATEROLE role (roles, ownership and grants) or as "
            f"the owner {owner!r} (grants only, after a migration), not as {current!r}"
        )
    ident = sql.Identifier

    # Tables: start from nothing, then grant the least each needs.
    cursor.execute(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname
        """,
        [schema],
    )
    tables = [row[0] for row in cursor.fetchall()]
    append_only = [t for t in tables if t in APPEND_ONLY_TABLES]
    for table in tables:
        target = sql.SQL("{}.{}").format(ident(schema), ident(table))
        cursor.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC, {}").format(target, ident(app)))
        if table in APPEND_ONLY_TABLES:
            privileges = "SELECT, INSERT"
        elif table in NO_DELETE_TABLES:
            privileges = "SELECT, INSERT, UPDATE"
        else:
            privileges = "SELECT, INSERT, UPDATE, DELETE"
        cursor.execute(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(sql.SQL(privileges), target, ident(app))
        )
    cursor.execute(
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            ident(schema), ident(app)
        )
    )
    cursor.execute(
        sql.SQL("GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {} TO {}").format(
            ident(schema), ident(app)
        )
    )
    # Tables a later migration creates get row privileges until the next run narrows them
    # (the migrate hook runs `migrate` then `db_roles`).
    cursor.execute(
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(ident(owner), ident(schema), ident(app))
    )
    cursor.execute(
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(ident(owner), ident(schema), ident(app))
    )
    return RolesReport(
        owner=owner, app=app, tables=len(tables), append_only=append_only, reassigned=reassigned
    )


def _member(cursor, member: str, group: str) -> bool:  # type: ignore[no-untyped-def]
    cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [member, group])
    row = cursor.fetchone()
    return bool(row and row[0])


def _roles_and_ownership(
    cursor,  # type: ignore[no-untyped-def]
    *,
    database: str,
    owner: str,
    app: str,
    owner_password: str | None,
    app_password: str | None,
    schema: str,
) -> int:
    """The administrator's part: the roles themselves, database and schema privileges, and
    the ownership of whatever a superuser created. Returns how many objects changed owner."""
    _role_ensure(cursor, owner, owner_password)
    _role_ensure(cursor, app, app_password)
    ident = sql.Identifier
    if _member(cursor, app, owner):  # the app must never act as the owner
        cursor.execute(sql.SQL("REVOKE {} FROM {}").format(ident(owner), ident(app)))

    # Database and schema: both connect; only the owner creates objects.
    cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(database)))
    cursor.execute(
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}, {}").format(
            ident(database), ident(owner), ident(app)
        )
    )
    cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(ident(schema)))
    cursor.execute(
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(ident(schema), ident(owner))
    )
    cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(ident(schema), ident(app)))
    cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(app)))
    # The balance checkpoint task waits for every transaction open when it read the last
    # transaction id (ledger/services/checkpoints.py): it must see other roles' sessions in
    # pg_stat_activity (read-only statistics; nothing else follows from it).
    cursor.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(ident(app)))

    # Everything the migrations created (perhaps as a superuser) belongs to the owner.
    reassigned = 0
    cursor.execute(
        """
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND pg_get_userbyid(c.relowner) <> %s
          -- sequences owned by a column follow their table
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
        ORDER BY c.relname
        """,
        [schema, owner],
    )
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    for name, kind in cursor.fetchall():
        cursor.execute(
            sql.SQL("ALTER {} {}.{} OWNER TO {}").format(
                sql.SQL(kinds[kind]), ident(schema), ident(name), ident(owner)
            )
        )
        reassigned += 1
    cursor.execute(
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s AND pg_get_userbyid(p.proowner) <> %s
        """,
        [schema, owner],
    )
    for (signature,) in cursor.fetchall():
        cursor.execute(
            sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(sql.SQL(signature), ident(owner))
        )
        reassigned += 1

    return reassigned
