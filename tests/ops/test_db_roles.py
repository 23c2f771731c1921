"""`manage.py db_roles`: the app role cannot rewrite the ledger, by privileges alone."""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection
from psycopg import errors, sql

from ops.db_roles import roles_apply

pytestmark = pytest.mark.django_db


def _params(**extra) -> dict:
    s = connection.settings_dict
    params = {
        "host": s.get("HOST") or "127.0.0.1",
        "port": s.get("PORT") or 5432,
        "dbname": s["NAME"],
        "autocommit": True,
    }
    params.update(extra)
    return params


@pytest.fixture
def roles() -> Iterator[tuple[str, str, str]]:
    """Two fresh roles (roles are cluster-wide: unique names, dropped afterwards) applied on
    the test database by a superuser connection outside the test's transaction."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    owner, app, password = f"eats_owner_t{suffix}", f"eats_app_t{suffix}", uuid.uuid4().hex
    superuser = connection.settings_dict.get("USER") or "postgres"
    admin = psycopg.connect(**_params(user=superuser))
    try:
        with admin.cursor() as cursor:
            report = roles_apply(
                cursor,
                database=connection.settings_dict["NAME"],
                owner=owner,
                app=app,
                app_password=password,
                owner_password=password,
            )
            # idempotent: a second run changes nothing and fails on nothing
            again = roles_apply(
                cursor, database=connection.settings_dict["NAME"], owner=owner, app=app
            )
            assert again.reassigned == 0
            assert again.tables == report.tables
            assert sorted(report.append_only) == [
                "ledger_accountmetadatachange",
                "ledger_posting",
                "ledger_seal",
                "ledger_transaction",
            ]
        yield owner, app, password
    finally:
        with admin.cursor() as cursor:
            for role in (owner, app):
                cursor.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        sql.Identifier(role), sql.Identifier(superuser)
                    )
                )
                cursor.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                cursor.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                        sql.Identifier(connection.settings_dict["NAME"]), sql.Identifier(role)
                    )
                )
                cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_transaction",
        "UPDATE ledger_transaction SET metadata = '{}'",
        "DELETE FROM ledger_seal",
        "UPDATE ledger_accountmetadatachange SET value = '1'",
        "TRUNCATE ledger_posting",
        "TRUNCATE ledger_transaction CASCADE",
        "ALTER TABLE ledger_posting DISABLE TRIGGER ALL",
        "ALTER TABLE ledger_transaction DISABLE TRIGGER ledger_transaction_append_only",
        "DROP TRIGGER ledger_posting_append_only ON ledger_posting",
        "DELETE FROM ledger_balance",
        "DELETE FROM ledger_account",
        "CREATE TABLE sneaky (id int)",
        "SET session_replication_role = replica",
    ],
)
def test_the_app_role_is_refused_by_privileges(roles, statement):
    # given: connected as the app role
    _owner, app, password = roles
    # when / then: refused by PostgreSQL's privilege checks (SQLSTATE 42501), not by a
    # trigger (the triggers raise LD002)
    with (
        psycopg.connect(**_params(user=app, password=password, autocommit=False)) as conn,
        conn.cursor() as cur,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        cur.execute(statement)


def test_the_app_role_reads_and_appends(roles):
    _owner, app, password = roles
    with (
        psycopg.connect(**_params(user=app, password=password, autocommit=False)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT count(*) FROM ledger_posting")
        assert cur.fetchone() is not None
        # rows are appended and updated where the application needs it (rolled back)
        cur.execute(
            "INSERT INTO ledger_account (address, metadata) VALUES ('probe:db_roles', '{}') "
            "RETURNING id"
        )
        assert cur.fetchone()[0] > 0
        cur.execute("UPDATE marketplace_stripe_event SET attempts = attempts WHERE false")
        cur.execute("DELETE FROM ledger_unsealed WHERE false")
        conn.rollback()


def test_the_app_role_maintains_the_balance_checkpoints(roles):
    # given: connected as the app role (the Celery worker running ledger.checkpoint)
    _owner, app, password = roles
    with (
        psycopg.connect(**_params(user=app, password=password, autocommit=False)) as conn,
        conn.cursor() as cur,
    ):
        # then: it reads the id sequence and every role's open transactions (the watermark)
        cur.execute(
            "SELECT coalesce(pg_sequence_last_value("
            "pg_get_serial_sequence('ledger_transaction', 'id')::regclass), 0)"
        )
        assert cur.fetchone()[0] >= 0
        cur.execute("SELECT pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')")
        assert cur.fetchone()[0] is True
        # and writes, folds into, rebuilds and prunes the derived rows (rolled back)
        cur.execute(
            "INSERT INTO ledger_checkpointrun (at, covers_tx_id) VALUES (now(), 0) RETURNING id"
        )
        run_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO ledger_checkpoint (run_id, account_id, asset, balance) "
            "VALUES (%s, 1, 'USD/2', 5) ON CONFLICT (run_id, account_id, asset) "
            "DO UPDATE SET balance = ledger_checkpoint.balance + excluded.balance",
            [run_id],
        )
        cur.execute("UPDATE ledger_checkpointrun SET covers_tx_id = 1")
        cur.execute("DELETE FROM ledger_checkpoint WHERE run_id = %s", [run_id])
        cur.execute("DELETE FROM ledger_checkpointrun WHERE id = %s", [run_id])
        conn.rollback()


def test_the_owner_role_owns_the_tables(roles):
    owner, _app, _password = roles
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'ledger_posting'"
        )
        assert cursor.fetchone()[0] == owner


def test_the_owner_reapplies_the_grants_after_a_migration_and_the_app_role_cannot(roles):
    # given: a table a later migration created as the owner (with the default privileges)
    owner, app, password = roles
    database = connection.settings_dict["NAME"]
    with psycopg.connect(**_params(user=owner, password=password)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE ledger_probe_i19 (id int)")
        try:
            # when: db_roles runs as the owner (the migrate hook): grants only
            report = roles_apply(cur, database=database, owner=owner, app=app)

            # then
            assert report.reassigned == 0
            cur.execute("SELECT has_table_privilege(%s, 'ledger_posting', 'UPDATE')", [app])
            assert cur.fetchone()[0] is False
            cur.execute("SELECT has_table_privilege(%s, 'ledger_probe_i19', 'DELETE')", [app])
            assert cur.fetchone()[0] is True
        finally:
            cur.execute("DROP TABLE ledger_probe_i19")
    with (
        psycopg.connect(**_params(user=app, password=password)) as conn,
        conn.cursor() as cur,
        pytest.raises(PermissionError),
    ):
        roles_apply(cur, database=database, owner=owner, app=app)
