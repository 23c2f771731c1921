"""PostgreSQL-only objects of the ledger, installed by migrations (`install`), no-ops elsewhere.

- `ledger_post(...)`: the write path in one statement (one round trip). It stores a plan that
  `ledger.domain.plan_postings` computed; the only rule it evaluates itself is
  `locked balance >= required` (raising SQLSTATE LD001 otherwise).
- Append-only triggers (SQLSTATE LD002) on transactions, postings, seals and metadata history;
  accounts can be neither deleted nor renamed; balances can be neither deleted nor truncated.
- A GIN (jsonb_path_ops) index on transaction metadata for `metadata @> {...}` filters.

A later change to any of these is a new migration that calls `install` again (every statement
is CREATE OR REPLACE / IF NOT EXISTS, so re-running is safe).
"""

from typing import Any

INSUFFICIENT_FUNDS_SQLSTATE = "LD001"
APPEND_ONLY_SQLSTATE = "LD002"
SEQUENCE_NAME = "ledger_transaction_id_seq"

POST_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_post(
    p_refs text[],              -- per transaction (n): reference or null
    p_timestamps timestamptz[], -- per transaction: effective date or null for now()
    p_metadata jsonb,           -- JSON array of n objects
    p_hashes text[],            -- per transaction: request fingerprint or null
    p_reverts bigint[],         -- per transaction: id of the reverted transaction or null
    p_addrs text[],             -- distinct addresses, sorted (the lock order of accounts)
    p_tx int[],                 -- per posting (m): 1-based ordinal of its transaction
    p_idx int[],                -- per posting: index within its transaction
    p_src int[],                -- per posting: 1-based index into p_addrs
    p_dst int[],
    p_assets text[],
    p_amounts bigint[],
    p_key_acc int[],            -- per balance key, sorted by (address, asset): index into p_addrs
    p_key_asset text[],
    p_key_in bigint[],
    p_key_out bigint[],
    p_key_req bigint[],         -- minimal locked balance, or null: not checked
    p_shard int                 -- shard row that unchecked keys are written to
) RETURNS TABLE (o_ord int, o_id bigint, o_timestamp timestamptz, o_inserted_at timestamptz,
                 o_replayed boolean, o_hash text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n int := coalesce(array_length(p_refs, 1), 0);
    v_now timestamptz := now();
    v_acc bigint[];
    v_ids bigint[];
    v_bal numeric;
    v_min_shard int;
    v_k int;
    v_na int;
    v_id bigint;
    v_new boolean[];
    v_row record;
    i int;
    j int;
BEGIN
    IF current_setting('lock_timeout') = '0' THEN
        PERFORM set_config('lock_timeout', '5s', true);
    END IF;

    -- 1. A reference already used: write nothing and return the stored transaction(s); the
    --    caller tells a replay from a conflict by comparing the fingerprints.
    IF array_position(p_refs, NULL) IS DISTINCT FROM 1 OR v_n > 1 THEN
        RETURN QUERY
            SELECT array_position(p_refs, t.reference::text), t.id, t.timestamp, t.inserted_at,
                   true, t.idempotency_hash::text
            FROM ledger_transaction t
            WHERE t.reference = ANY(p_refs);
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    -- 2. Accounts, created on first use, in address order. v_new marks the ones this call
    --    created: nobody else can hold balance rows for them until we commit.
    v_na := coalesce(array_length(p_addrs, 1), 0);
    v_acc := array_fill(NULL::bigint, ARRAY[v_na]);
    v_new := array_fill(false, ARRAY[v_na]);
    IF v_na <= 64 THEN
        -- one index scan (a join on unnest() could be planned as a scan of every account)
        FOR v_row IN SELECT x.id, x.address FROM ledger_account x WHERE x.address = ANY(p_addrs)
        LOOP
            v_acc[array_position(p_addrs, v_row.address::text)] := v_row.id;
        END LOOP;
    ELSE
        -- scalar subqueries: one index probe per address, never a join planned as a scan
        SELECT array_agg((SELECT x.id FROM ledger_account x WHERE x.address = u.a) ORDER BY u.ord)
        INTO v_acc
        FROM unnest(p_addrs) WITH ORDINALITY AS u(a, ord);
    END IF;
    IF array_position(v_acc, NULL) IS NOT NULL THEN
        WITH ins AS (
            INSERT INTO ledger_account (address, metadata, created_at)
            SELECT u.a, '{}'::jsonb, v_now
            FROM unnest(p_addrs, v_acc) WITH ORDINALITY AS u(a, id, ord)
            WHERE u.id IS NULL
            ORDER BY u.ord
            ON CONFLICT (address) DO NOTHING
            RETURNING id, address
        )
        SELECT array_agg(coalesce(u.id, ins.id) ORDER BY u.ord),
               array_agg(ins.id IS NOT NULL ORDER BY u.ord)
        INTO v_acc, v_new
        FROM unnest(p_addrs, v_acc) WITH ORDINALITY AS u(a, id, ord)
        LEFT JOIN ins ON ins.address = u.a;
        IF array_position(v_acc, NULL) IS NOT NULL THEN
            -- created by a concurrent writer that committed after this statement began
            FOR i IN 1..v_na LOOP
                CONTINUE WHEN v_acc[i] IS NOT NULL;
                SELECT x.id INTO v_id FROM ledger_account x WHERE x.address = p_addrs[i];
                v_acc[i] := v_id;
            END LOOP;
        END IF;
    END IF;

    -- 3. Balances, in (address, asset) order: the global lock order.
    v_k := coalesce(array_length(p_key_acc, 1), 0);
    i := 1;
    WHILE i <= v_k LOOP
        -- A run of consecutive keys that need no lock-and-read is one multi-row upsert,
        -- processed in key order: unchecked keys (added to this writer's shard without
        -- reading), and keys of accounts created by this call (balance 0, nobody else's rows).
        j := i - 1;
        WHILE j < v_k AND (p_key_req[j + 1] IS NULL OR v_new[p_key_acc[j + 1]]) LOOP
            j := j + 1;
            IF p_key_req[j] > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'LD001', MESSAGE = 'insufficient funds',
                    DETAIL = j::text || '|0';
            END IF;
        END LOOP;
        IF j >= i THEN
            INSERT INTO ledger_balance AS b (account_id, asset, shard, input, output)
            SELECT v_acc[p_key_acc[g]], p_key_asset[g], p_shard, p_key_in[g], p_key_out[g]
            FROM generate_series(i, j) AS g ORDER BY g
            ON CONFLICT (account_id, asset, shard) DO UPDATE
            SET input = b.input + EXCLUDED.input, output = b.output + EXCLUDED.output;
            i := j + 1;
            CONTINUE;
        END IF;
        LOOP
            -- checked: lock every shard row in shard order, then compare the sum
            SELECT coalesce(sum(s.input - s.output), 0), min(s.shard) INTO v_bal, v_min_shard
            FROM (SELECT bb.input, bb.output, bb.shard FROM ledger_balance bb
                  WHERE bb.account_id = v_acc[p_key_acc[i]] AND bb.asset = p_key_asset[i]
                  ORDER BY bb.shard FOR UPDATE) s;
            IF v_bal < p_key_req[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'LD001', MESSAGE = 'insufficient funds',
                    DETAIL = i::text || '|' || v_bal::text;
            END IF;
            IF v_min_shard IS NOT NULL THEN
                UPDATE ledger_balance
                SET input = input + p_key_in[i], output = output + p_key_out[i]
                WHERE account_id = v_acc[p_key_acc[i]] AND asset = p_key_asset[i]
                  AND shard = v_min_shard;
                EXIT;
            END IF;
            -- no row yet (balance 0, checked above): create it; if another writer created
            -- it first, lock and check again
            INSERT INTO ledger_balance (account_id, asset, shard, input, output)
            VALUES (v_acc[p_key_acc[i]], p_key_asset[i], 0, p_key_in[i], p_key_out[i])
            ON CONFLICT (account_id, asset, shard) DO NOTHING;
            EXIT WHEN FOUND;
        END LOOP;
        i := i + 1;
    END LOOP;

    -- 4. Transactions (ids in ordinal order), the sealer's queue, postings.
    SELECT array_agg(nextval('ledger_transaction_id_seq'::regclass) ORDER BY g) INTO v_ids
    FROM generate_series(1, v_n) AS g;
    INSERT INTO ledger_transaction
        (id, reference, timestamp, inserted_at, metadata, idempotency_hash, reverts_id)
    SELECT v_ids[o], p_refs[o], coalesce(p_timestamps[o], v_now), v_now,
           coalesce(p_metadata -> (o - 1), '{}'::jsonb), p_hashes[o], p_reverts[o]
    FROM generate_series(1, v_n) AS o;
    INSERT INTO ledger_unsealed (transaction_id) SELECT unnest(v_ids);
    INSERT INTO ledger_posting
        (transaction_id, index, source_id, destination_id, asset, amount, timestamp)
    SELECT v_ids[p.t], p.idx, v_acc[p.s], v_acc[p.d], p.asset, p.amount,
           coalesce(p_timestamps[p.t], v_now)
    FROM unnest(p_tx, p_idx, p_src, p_dst, p_assets, p_amounts) AS p(t, idx, s, d, asset, amount);

    RETURN QUERY
        SELECT o, v_ids[o], coalesce(p_timestamps[o], v_now), v_now, false, p_hashes[o]
        FROM generate_series(1, v_n) AS o;
END
$fn$;
"""

APPEND_ONLY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'LD002', HINT = 'Correct a transaction with a revert.';
END
$fn$;
"""

APPEND_ONLY_TABLES = (
    "ledger_transaction",
    "ledger_posting",
    "ledger_seal",
    "ledger_accountmetadatachange",
)


def _trigger_statements() -> list[str]:
    statements = []
    for table in APPEND_ONLY_TABLES:
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
        ]
    for table in ("ledger_account", "ledger_balance"):
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
        ]
    statements += [
        "DROP TRIGGER IF EXISTS ledger_account_no_rename ON ledger_account",
        "CREATE TRIGGER ledger_account_no_rename BEFORE UPDATE ON ledger_account FOR EACH ROW "
        "WHEN (OLD.address IS DISTINCT FROM NEW.address OR OLD.id IS DISTINCT FROM NEW.id) "
        "EXECUTE FUNCTION ledger_refuse_change()",
    ]
    return statements


INDEXES = [
    "CREATE INDEX IF NOT EXISTS ledger_transaction_metadata_gin "
    "ON ledger_transaction USING gin (metadata jsonb_path_ops)",
    # Balances are updated in place all day long: leave room on each page for HOT updates.
    "ALTER TABLE ledger_balance SET (fillfactor = 50)",
]


def install_statements() -> list[str]:
    return [POST_FUNCTION, APPEND_ONLY_FUNCTION, *_trigger_statements(), *INDEXES]


def install(apps: Any, schema_editor: Any) -> None:
    """RunPython forward: create or replace every PostgreSQL object (no-op elsewhere)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in install_statements():
            cursor.execute(statement)


def uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in (*APPEND_ONLY_TABLES, "ledger_account", "ledger_balance"):
            for suffix in ("append_only", "no_truncate", "no_delete", "no_rename"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix} ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS ledger_refuse_change() CASCADE")
        cursor.execute("DROP INDEX IF EXISTS ledger_transaction_metadata_gin")
        cursor.execute("DROP FUNCTION IF EXISTS ledger_post CASCADE")
