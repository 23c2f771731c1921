"""PostgreSQL-only objects of invoicing, installed by a migration (no-ops elsewhere).

- Issued documents and their lines are immutable: triggers refuse UPDATE, DELETE and TRUNCATE
  (SQLSTATE IV001). Corrections are credit notes. The test database's flush bypasses them the
  way it bypasses the ledger's (ledger/management/commands/flush.py: only on a `test_`
  database, with session_replication_role = replica).
- An order's invoicing model cannot change once a document of the order exists (IV002).
"""

from typing import Any

IMMUTABLE_SQLSTATE = "IV001"
FROZEN_SQLSTATE = "IV002"

IMMUTABLE_TABLES = ("invoicing_invoice", "invoicing_invoiceline", "invoicing_invoicingprofile")

FUNCTIONS = [
    r"""
CREATE OR REPLACE FUNCTION invoicing_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'invoicing: % on % is refused: issued documents are immutable',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'IV001', HINT = 'Correct a document with a credit note.';
END
$fn$;
""",
    r"""
CREATE OR REPLACE FUNCTION invoicing_order_model_frozen() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.model IS DISTINCT FROM OLD.model
        OR NEW.order_id IS DISTINCT FROM OLD.order_id)
       AND EXISTS (SELECT 1 FROM invoicing_invoice WHERE order_id = OLD.order_id) THEN
        RAISE EXCEPTION 'invoicing: order % already has documents: its model is frozen',
            OLD.order_id USING ERRCODE = 'IV002';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$fn$;
""",
]


def install_statements() -> list[str]:
    statements = list(FUNCTIONS)
    for table in IMMUTABLE_TABLES:
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}",
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION invoicing_refuse_change()",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION invoicing_refuse_change()",
        ]
    # The WHEN clause is evaluated without calling the function: marking a batch of orders
    # documented (the issuing hot path) runs no PL/pgSQL. Free room on each page lets that
    # update stay on the page (HOT: no index entries), `documented` being in no index.
    statements += [
        "DROP TRIGGER IF EXISTS invoicing_orderinvoicing_frozen ON invoicing_orderinvoicing",
        "CREATE TRIGGER invoicing_orderinvoicing_frozen BEFORE UPDATE "
        "ON invoicing_orderinvoicing FOR EACH ROW "
        "WHEN (NEW.model IS DISTINCT FROM OLD.model OR NEW.order_id IS DISTINCT FROM OLD.order_id) "
        "EXECUTE FUNCTION invoicing_order_model_frozen()",
        "DROP TRIGGER IF EXISTS invoicing_orderinvoicing_frozen_delete ON invoicing_orderinvoicing",
        "CREATE TRIGGER invoicing_orderinvoicing_frozen_delete BEFORE DELETE "
        "ON invoicing_orderinvoicing FOR EACH ROW EXECUTE FUNCTION invoicing_order_model_frozen()",
        "ALTER TABLE invoicing_orderinvoicing SET (fillfactor = 70)",
    ]
    return statements


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in install_statements():
            cursor.execute(statement)


def uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in IMMUTABLE_TABLES:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for trigger in (
            "invoicing_orderinvoicing_frozen",
            "invoicing_orderinvoicing_frozen_delete",
        ):
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON invoicing_orderinvoicing")
        cursor.execute("DROP FUNCTION IF EXISTS invoicing_refuse_change() CASCADE")
        cursor.execute("DROP FUNCTION IF EXISTS invoicing_order_model_frozen() CASCADE")
