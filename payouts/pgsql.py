"""PostgreSQL-only objects of the payouts app, installed by a migration (no-ops elsewhere).

- `payouts_payout_transition`: BEFORE UPDATE OF state, refuses any state change the
  transition table (`payouts.transitions.TRANSITIONS`) does not allow (SQLSTATE PO001), so no
  code path (an admin `update()`, a shell) can leave a terminal state or skip one (I12).
- `payouts_payout` keeps 20% of each page free (HOT updates of the lease columns).
- `payouts_payout` rows cannot be deleted, `payouts_event` and `payouts_hold_change` rows
  can be neither updated nor deleted (SQLSTATE PO002). TRUNCATE stays possible (test flushes).

Re-running `install` is safe (CREATE OR REPLACE / DROP ... IF EXISTS); a change to the
transition table needs a migration that calls it again.
"""

from __future__ import annotations

from typing import Any

from payouts.transitions import transition_pairs

TRANSITION_SQLSTATE = "PO001"
APPEND_ONLY_SQLSTATE = "PO002"


def _transition_function() -> str:
    pairs = ", ".join(f"'{a}>{b}'" for a, b in transition_pairs())
    return f"""
CREATE OR REPLACE FUNCTION payouts_check_transition() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state
       AND NOT (OLD.state || '>' || NEW.state = ANY (ARRAY[{pairs}])) THEN
        RAISE EXCEPTION 'payouts: transition % -> % of payout % is refused',
            OLD.state, NEW.state, OLD.id
            USING ERRCODE = '{TRANSITION_SQLSTATE}',
                  HINT = 'See payouts.transitions.TRANSITIONS.';
    END IF;
    RETURN NEW;
END
$fn$;
"""


REFUSE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION payouts_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'payouts: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = '{APPEND_ONLY_SQLSTATE}';
END
$fn$;
"""


def install_statements() -> list[str]:
    statements = [_transition_function(), REFUSE_FUNCTION]
    statements += [
        "DROP TRIGGER IF EXISTS payouts_payout_transition ON payouts_payout",
        "CREATE TRIGGER payouts_payout_transition BEFORE UPDATE OF state ON payouts_payout "
        "FOR EACH ROW EXECUTE FUNCTION payouts_check_transition()",
        "DROP TRIGGER IF EXISTS payouts_payout_no_delete ON payouts_payout",
        "CREATE TRIGGER payouts_payout_no_delete BEFORE DELETE ON payouts_payout "
        "FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change()",
    ]
    for table in ("payouts_event", "payouts_hold_change"):
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change()",
        ]
    # The lease columns are not indexed: with room left on each page, claiming and releasing
    # a payout are HOT updates (no index writes).
    statements.append("ALTER TABLE payouts_payout SET (fillfactor = 80)")
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
        cursor.execute("DROP TRIGGER IF EXISTS payouts_payout_transition ON payouts_payout")
        cursor.execute("DROP TRIGGER IF EXISTS payouts_payout_no_delete ON payouts_payout")
        for table in ("payouts_event", "payouts_hold_change"):
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS payouts_check_transition()")
        cursor.execute("DROP FUNCTION IF EXISTS payouts_refuse_change()")
