"""PostgreSQL triggers that make the audit table append-only (no-ops on other databases)."""

from typing import Any

APPEND_ONLY_SQLSTATE = "AU001"

STATEMENTS = [
    r"""
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'audit: % on % is refused: the audit trail is append-only',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'AU001';
END
$fn$;
""",
    "DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry",
    "CREATE TRIGGER audit_auditentry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "DROP TRIGGER IF EXISTS audit_auditentry_no_truncate ON audit_auditentry",
    "CREATE TRIGGER audit_auditentry_no_truncate BEFORE TRUNCATE ON audit_auditentry "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
]


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in STATEMENTS:
            cursor.execute(statement)


def uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION IF EXISTS audit_refuse_change() CASCADE")
