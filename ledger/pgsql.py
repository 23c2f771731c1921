"""PostgreSQL-only objects of the ledger, installed by migrations (`install`), no-ops elsewhere.

- `ledger_post(...)`: the write path in one statement (one round trip). It stores a plan that
  `ledger.domain.plan_postings` computed; the only rules it evaluates itself are
  `locked balance >= required` (raising SQLSTATE LD001 otherwise) and, for the balances a
  Numscript run read before the call, `locked balance = expected` (SQLSTATE LD003: the read is
  stale, the caller runs the script again under locks). For a Numscript run that read nothing
  (speculation) it also checks the account metadata the run used (SQLSTATE LD004 if it
  changed) and computes the run's last `send [A *]` (a drain) on the balance it locks. It
  claims the writer's balance shard
  for the transaction: the first free slot of LEDGER_BALANCE_SHARDS, by a transaction-level
  advisory try-lock, starting at `pg_backend_pid() % shards`.
- `ledger_post_guarded(...)`: the same, for a caller inside a transaction: a failure rolls
  back only the call (a subtransaction) and is returned as a row, not raised, so the caller's
  transaction goes on without a SAVEPOINT round trip before and after every write.
- `ledger_script_read(...)`: what a Numscript run reads before that call, unlocked, in one
  round trip (the reference, account metadata, balances).
- Append-only triggers (SQLSTATE LD002) on transactions, postings, seals and metadata history;
  accounts can be neither deleted nor renamed; balances can be neither deleted nor truncated.
- A GIN (jsonb_path_ops) index on transaction metadata for `metadata @> {...}` filters.

A later change to any of these is a new migration that calls `install` again (every statement
is CREATE OR REPLACE / IF NOT EXISTS, so re-running is safe).
"""

from typing import Any

INSUFFICIENT_FUNDS_SQLSTATE = "LD001"
APPEND_ONLY_SQLSTATE = "LD002"
STALE_READ_SQLSTATE = "LD003"
SPECULATION_REFUSED_SQLSTATE = "LD004"
# pg_try_advisory_xact_lock(SHARD_SLOT_LOCK_SPACE, slot): the writer-shard slots ("LS")
SHARD_SLOT_LOCK_SPACE = 0x4C53
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
    p_key_req numeric[],        -- minimal locked balance, or null: not checked (numeric: a
                                -- bound plus a large credit can pass the bigint range)
    p_key_expect numeric[],     -- exact locked balance a script read before the call, or null
    p_shards int,               -- LEDGER_BALANCE_SHARDS: the writer's shard is claimed below
    -- A Numscript run that read nothing (speculation, one transaction); left out otherwise:
    p_meta_addrs text[] DEFAULT NULL,   -- accounts whose metadata the run used
    p_meta_values text[] DEFAULT NULL,  -- per p_meta_addrs: that whole metadata as used, JSON
    p_drain_key int DEFAULT NULL,       -- 1 (the first key) if its last statement is a drain
    p_drain_held numeric DEFAULT NULL,  -- what the run moved in (+) and out (-) of it before
    p_drain_num numeric[] DEFAULT NULL, -- per part: the portion's numerator
    p_drain_den numeric[] DEFAULT NULL, -- per part: the portion's denominator
    p_drain_dst int[] DEFAULT NULL      -- per part: its destination's key
) RETURNS TABLE (o_ord int, o_id bigint, o_timestamp timestamptz, o_inserted_at timestamptz,
                 o_replayed boolean, o_hash text, o_parts bigint[])
LANGUAGE plpgsql
-- Plan each statement once per connection: left to itself, the plan cache kept choosing
-- custom plans, i.e. planning every statement on every call (14% of the backend's time).
SET plan_cache_mode = force_generic_plan
AS $fn$
-- Every statement costs an executor start-up: the steps are as few statements as possible
-- (simple expressions, the ones without a table, are evaluated without the executor).
DECLARE
    v_n int := coalesce(array_length(p_refs, 1), 0);
    v_na int := coalesce(array_length(p_addrs, 1), 0);
    v_k int := coalesce(array_length(p_key_acc, 1), 0);
    v_now timestamptz := now();
    v_acc bigint[];
    v_new boolean[];
    v_ids bigint[];
    v_bal numeric;
    v_min_shard int;
    v_id bigint;
    v_setting text;
    v_shard int := 0;
    v_rows int;
    v_overflow boolean := false;
    v_meta_ok boolean;
    v_total numeric;
    v_left numeric;
    v_parts bigint[];
    v_np int := coalesce(array_length(p_drain_num, 1), 0);
    v_m int := coalesce(array_length(p_amounts, 1), 0);
    i int;
    j int;
BEGIN
    IF current_setting('lock_timeout') = '0' THEN
        v_setting := set_config('lock_timeout', '5s', true);
    END IF;

    -- 1. A reference already used: write nothing and return the stored transaction(s); the
    --    caller tells a replay from a conflict by comparing the fingerprints.
    IF array_position(p_refs, NULL) IS DISTINCT FROM 1 OR v_n > 1 THEN
        RETURN QUERY
            SELECT array_position(p_refs, t.reference::text), t.id, t.timestamp, t.inserted_at,
                   true, t.idempotency_hash::text, NULL::bigint[]
            FROM ledger_transaction t
            WHERE t.reference = ANY(p_refs);
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    IF p_drain_key IS NOT NULL THEN
        IF p_drain_key <> 1 OR v_n <> 1 THEN
            RAISE EXCEPTION 'ledger_post: a drain is the first key of one transaction';
        END IF;
        -- checked (locked, never added to a writer's shard), whatever the run required
        p_key_req[1] := coalesce(p_key_req[1], -p_drain_held);
    END IF;

    -- 2. Accounts, created on first use in address order, and their ids, in one statement
    --    (index probes by scalar subquery: a join could be planned as a scan of all accounts).
    --    v_new marks the accounts this call created: nobody else can hold balance rows for
    --    them until we commit. v_meta_ok: a speculative Numscript run's metadata is still what
    --    it used (else LD004, the client runs the script the ordinary way).
    WITH ins AS (
        INSERT INTO ledger_account (address, metadata, created_at)
        SELECT u.a, '{}'::jsonb, v_now
        FROM unnest(p_addrs) WITH ORDINALITY AS u(a, ord)
        WHERE (SELECT x.id FROM ledger_account x WHERE x.address = u.a) IS NULL
        ORDER BY u.ord
        ON CONFLICT (address) DO NOTHING
        RETURNING id, address
    ), found AS (
        SELECT u.ord, (SELECT x.id FROM ledger_account x WHERE x.address = u.a) AS id, u.a
        FROM unnest(p_addrs) WITH ORDINALITY AS u(a, ord)
    )
    SELECT array_agg(coalesce(f.id, ins.id) ORDER BY f.ord),
           array_agg(ins.id IS NOT NULL ORDER BY f.ord),
           p_meta_addrs IS NULL
           OR (SELECT bool_and((SELECT x.metadata FROM ledger_account x WHERE x.address = m.a)
                               IS NOT DISTINCT FROM m.v::jsonb)
               FROM unnest(p_meta_addrs, p_meta_values) AS m(a, v))
    INTO v_acc, v_new, v_meta_ok
    FROM found f LEFT JOIN ins ON ins.address = f.a;
    IF NOT v_meta_ok THEN
        RAISE EXCEPTION USING ERRCODE = 'LD004', MESSAGE = 'account metadata changed';
    END IF;
    IF array_position(v_acc, NULL) IS NOT NULL THEN
        -- created by a concurrent writer that committed after this statement began
        FOR i IN 1..v_na LOOP
            CONTINUE WHEN v_acc[i] IS NOT NULL;
            SELECT x.id INTO v_id FROM ledger_account x WHERE x.address = p_addrs[i];
            v_acc[i] := v_id;
        END LOOP;
    END IF;

    -- 3. The writer's shard, for the keys written without reading (only if there are any):
    --    the first slot, from this backend's own, that no other open transaction holds. A
    --    transaction-level try-lock: it never waits, is released at commit or rollback (nothing
    --    outlives the transaction: PgBouncer's transaction pooling is fine), and two writers
    --    in flight never add to the same hot shard row. With more writers than slots, the
    --    backend's own slot is shared (a row-lock wait, as before).
    IF p_shards > 1 AND array_position(p_key_req, NULL) IS NOT NULL THEN
        v_shard := pg_backend_pid() % p_shards;
        FOR k IN 0..p_shards - 1 LOOP  -- 19539: SHARD_SLOT_LOCK_SPACE
            IF pg_try_advisory_xact_lock(19539, (v_shard + k) % p_shards) THEN
                v_shard := (v_shard + k) % p_shards;
                EXIT;
            END IF;
        END LOOP;
    END IF;

    -- 4. Balances, in (address, asset) order: the global lock order. A volume that would
    --    pass the bigint range is not written and reported after every key is checked: an
    --    insufficient-funds error anywhere in the transaction is the answer before it (and the
    --    portable path's answer too, whichever shard row holds the volumes).
    i := 1;
    WHILE i <= v_k LOOP
        -- A run of consecutive keys that need no lock-and-read is one multi-row upsert,
        -- processed in key order: unchecked keys (added to this writer's shard without
        -- reading), and keys of accounts created by this call (balance 0, nobody else's rows).
        -- (A new account whose check fails at 0 ends the run, and fails below in key order.)
        -- A checked key of a new account starts its shard 0, as the lock-and-read path does.
        j := i - 1;
        WHILE j < v_k AND (p_key_req[j + 1] IS NULL
                           OR (v_new[p_key_acc[j + 1]] AND p_key_req[j + 1] <= 0
                               AND coalesce(p_key_expect[j + 1], 0) = 0
                               AND j + 1 IS DISTINCT FROM p_drain_key)) LOOP
            j := j + 1;
        END LOOP;
        IF j >= i THEN
            INSERT INTO ledger_balance AS b (account_id, asset, shard, input, output)
            SELECT v_acc[p_key_acc[g]], p_key_asset[g],
                   CASE WHEN p_key_req[g] IS NULL THEN v_shard ELSE 0 END,
                   p_key_in[g], p_key_out[g]
            FROM generate_series(i, j) AS g ORDER BY g
            ON CONFLICT (account_id, asset, shard) DO UPDATE
            SET input = b.input + EXCLUDED.input, output = b.output + EXCLUDED.output
            WHERE b.input <= 9223372036854775807 - EXCLUDED.input
              AND b.output <= 9223372036854775807 - EXCLUDED.output;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            IF v_rows <= j - i THEN
                v_overflow := true;
            END IF;
            i := j + 1;
            CONTINUE;
        END IF;
        LOOP
            -- checked: lock every shard row in shard order, then compare the sum
            SELECT coalesce(sum(s.input - s.output), 0), min(s.shard) INTO v_bal, v_min_shard
            FROM (SELECT bb.input, bb.output, bb.shard FROM ledger_balance bb
                  WHERE bb.account_id = v_acc[p_key_acc[i]] AND bb.asset = p_key_asset[i]
                  ORDER BY bb.shard FOR UPDATE) s;
            IF i = p_drain_key AND v_parts IS NULL THEN
                -- The drain (key 1: locked before any other, the global order): the locked
                -- balance plus what the run moved is the total, split as the interpreter
                -- splits an allotment: the floor of each portion, then the leftover units one
                -- each to the first parts. Part k goes to key p_drain_dst[k] (after this one in
                -- the order) and is the amount of the k-th of the last postings (sent as 0).
                -- A total or a part that is not positive, or a total past the bigint range,
                -- is LD004: the ordinary run gives the exact answer for those.
                v_total := v_bal + p_drain_held;
                IF v_total <= 0 OR v_total > 9223372036854775807 THEN
                    RAISE EXCEPTION USING ERRCODE = 'LD004', MESSAGE = 'drain out of range',
                        DETAIL = v_total::text;
                END IF;
                v_parts := '{}';
                v_left := v_total;
                FOR k IN 1..v_np LOOP
                    v_parts[k] := div(v_total * p_drain_num[k], p_drain_den[k]);
                    v_left := v_left - v_parts[k];
                END LOOP;
                FOR k IN 1..v_np LOOP
                    EXIT WHEN v_left <= 0;
                    v_parts[k] := v_parts[k] + 1;
                    v_left := v_left - 1;
                END LOOP;
                IF v_left <> 0 OR array_position(v_parts, 0::bigint) IS NOT NULL THEN
                    RAISE EXCEPTION USING ERRCODE = 'LD004', MESSAGE = 'empty drain part',
                        DETAIL = v_total::text;
                END IF;
                FOR k IN 1..v_np LOOP
                    p_amounts[v_m - v_np + k] := v_parts[k];
                    p_key_in[p_drain_dst[k]] := p_key_in[p_drain_dst[k]] + v_parts[k];
                END LOOP;
                p_key_out[i] := p_key_out[i] + v_total;
                -- what the parts were computed on: a row created since, when there was none,
                -- is a stale read (LD003) on the next turn of this loop
                p_key_expect[i] := v_bal;
            END IF;
            IF v_bal <> p_key_expect[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'LD003', MESSAGE = 'stale balance read',
                    DETAIL = i::text || '|' || v_bal::text;
            END IF;
            IF v_bal < p_key_req[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'LD001', MESSAGE = 'insufficient funds',
                    DETAIL = i::text || '|' || v_bal::text;
            END IF;
            IF v_min_shard IS NOT NULL THEN
                -- the change lands in a locked row, never in a row a concurrent checker
                -- that locked the others could not see (a key only read changes nothing)
                IF p_key_in[i] <> 0 OR p_key_out[i] <> 0 THEN
                    UPDATE ledger_balance
                    SET input = input + p_key_in[i], output = output + p_key_out[i]
                    WHERE account_id = v_acc[p_key_acc[i]] AND asset = p_key_asset[i]
                      AND shard = v_min_shard
                      AND input <= 9223372036854775807 - p_key_in[i]
                      AND output <= 9223372036854775807 - p_key_out[i];
                    IF NOT FOUND THEN
                        v_overflow := true;
                    END IF;
                END IF;
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

    IF v_overflow THEN
        RAISE EXCEPTION USING ERRCODE = '22003', MESSAGE = 'ledger: volume out of bigint range';
    END IF;

    -- 5. Transactions (ids in ordinal order), the sealer's queue and the postings: one
    --    statement.
    IF v_n = 1 THEN
        v_ids := ARRAY[nextval('ledger_transaction_id_seq'::regclass)];
    ELSE
        v_ids := ARRAY(SELECT nextval('ledger_transaction_id_seq'::regclass)
                       FROM generate_series(1, v_n));
    END IF;
    WITH t AS (
        INSERT INTO ledger_transaction
            (id, reference, timestamp, inserted_at, metadata, idempotency_hash, reverts_id)
        SELECT v_ids[o], p_refs[o], coalesce(p_timestamps[o], v_now), v_now,
               coalesce(p_metadata -> (o - 1), '{}'::jsonb), p_hashes[o], p_reverts[o]
        FROM generate_series(1, v_n) AS o
    ), q AS (
        INSERT INTO ledger_unsealed (transaction_id) SELECT unnest(v_ids)
    )
    INSERT INTO ledger_posting
        (transaction_id, index, source_id, destination_id, asset, amount, timestamp)
    SELECT v_ids[p.t], p.idx, v_acc[p.s], v_acc[p.d], p.asset, p.amount,
           coalesce(p_timestamps[p.t], v_now)
    FROM unnest(p_tx, p_idx, p_src, p_dst, p_assets, p_amounts) AS p(t, idx, s, d, asset, amount);

    FOR i IN 1..v_n LOOP
        o_ord := i;
        o_id := v_ids[i];
        o_timestamp := coalesce(p_timestamps[i], v_now);
        o_inserted_at := v_now;
        o_replayed := false;
        o_hash := p_hashes[i];
        o_parts := v_parts;
        RETURN NEXT;
    END LOOP;
END
$fn$;
"""

# ledger_post's parameters (names, types): the guarded variant's signature and call, and the
# client's call of either (ledger.writer)...
POST_PARAMS = (
    ("p_refs", "text[]"),
    ("p_timestamps", "timestamptz[]"),
    ("p_metadata", "jsonb"),
    ("p_hashes", "text[]"),
    ("p_reverts", "bigint[]"),
    ("p_addrs", "text[]"),
    ("p_tx", "int[]"),
    ("p_idx", "int[]"),
    ("p_src", "int[]"),
    ("p_dst", "int[]"),
    ("p_assets", "text[]"),
    ("p_amounts", "bigint[]"),
    ("p_key_acc", "int[]"),
    ("p_key_asset", "text[]"),
    ("p_key_in", "bigint[]"),
    ("p_key_out", "bigint[]"),
    ("p_key_req", "numeric[]"),
    ("p_key_expect", "numeric[]"),
    ("p_shards", "int"),
)
# ...and what a speculative Numscript run leaves to it (defaults: null)
SCRIPT_PARAMS = (
    ("p_meta_addrs", "text[]"),
    ("p_meta_values", "text[]"),
    ("p_drain_key", "int"),
    ("p_drain_held", "numeric"),
    ("p_drain_num", "numeric[]"),
    ("p_drain_den", "numeric[]"),
    ("p_drain_dst", "int[]"),
)

GUARDED_POST_FUNCTION = (
    "CREATE OR REPLACE FUNCTION ledger_post_guarded(\n    "
    + ",\n    ".join(
        [f"{name} {kind}" for name, kind in POST_PARAMS]
        + [f"{name} {kind} DEFAULT NULL" for name, kind in SCRIPT_PARAMS]
    )
    + r"""
) RETURNS TABLE (o_ord int, o_id bigint, o_timestamp timestamptz, o_inserted_at timestamptz,
                 o_replayed boolean, o_hash text, o_parts bigint[])
LANGUAGE plpgsql
AS $fn$
-- ledger_post for a caller inside a transaction that goes on after a failed write (the
-- Numscript fallback, a replay after a concurrent writer took the reference, a caller that
-- handles insufficient funds): a failure rolls back only this call (a subtransaction, as a
-- SAVEPOINT would, without its two client round trips) and comes back as one row, o_ord = 0
-- and o_hash = 'SQLSTATE|constraint|message|detail', for the client to raise.
DECLARE
    v_state text;
    v_constraint text;
    v_message text;
    v_detail text;
BEGIN
    RETURN QUERY SELECT * FROM ledger_post("""
    + ", ".join(name for name, _kind in POST_PARAMS + SCRIPT_PARAMS)
    + r""");
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME,
        v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
    o_ord := 0;
    o_hash := v_state || '|' || coalesce(v_constraint, '') || '|'
        || replace(coalesce(v_message, ''), '|', '/') || '|' || coalesce(v_detail, '');
    RETURN NEXT;
END
$fn$;
"""
)

SCRIPT_READ_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ledger_script_read(
    p_ref text,          -- the request's reference, or null
    p_meta text[],       -- addresses whose metadata the script reads
    p_addrs text[],      -- per balance: address
    p_assets text[],     -- per balance: ledger asset
    OUT o_tx bigint,     -- the transaction holding p_ref, if any
    OUT o_meta text[],   -- per p_meta: the account's metadata (JSON text), null: no account
    OUT o_bal numeric[]  -- per balance: the sum of its shard rows (0: none)
) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
-- What a Numscript run reads before its write, without locks: `ledger_post` checks every
-- balance read here again under its row locks (p_key_expect). Index probes, one per value.
DECLARE
    v_meta text;
    v_bal numeric;
    i int;
BEGIN
    IF p_ref IS NOT NULL THEN
        SELECT t.id INTO o_tx FROM ledger_transaction t WHERE t.reference = p_ref;
    END IF;
    FOR i IN 1..coalesce(array_length(p_meta, 1), 0) LOOP
        SELECT a.metadata::text INTO v_meta FROM ledger_account a WHERE a.address = p_meta[i];
        o_meta[i] := v_meta;
    END LOOP;
    FOR i IN 1..coalesce(array_length(p_addrs, 1), 0) LOOP
        SELECT sum(b.input - b.output) INTO v_bal FROM ledger_balance b
        WHERE b.account_id = (SELECT a.id FROM ledger_account a WHERE a.address = p_addrs[i])
          AND b.asset = p_assets[i];
        o_bal[i] := coalesce(v_bal, 0);
    END LOOP;
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


# Earlier signatures of ledger_post, dropped when the current one is installed.
OLD_SIGNATURES = [
    "ledger_post(text[], timestamptz[], jsonb, text[], bigint[], text[], int[], int[], int[], "
    "int[], text[], bigint[], int[], text[], bigint[], bigint[], bigint[], int)",
    "ledger_post(text[], timestamptz[], jsonb, text[], bigint[], text[], int[], int[], int[], "
    "int[], text[], bigint[], int[], text[], bigint[], bigint[], numeric[], int)",
    "ledger_post(text[], timestamptz[], jsonb, text[], bigint[], text[], int[], int[], int[], "
    "int[], text[], bigint[], int[], text[], bigint[], bigint[], numeric[], numeric[], int)",
    "ledger_post_guarded(text[], timestamptz[], jsonb, text[], bigint[], text[], int[], int[], "
    "int[], int[], text[], bigint[], int[], text[], bigint[], bigint[], numeric[], numeric[], "
    "int)",
]


def install_statements() -> list[str]:
    return [
        *(f"DROP FUNCTION IF EXISTS {signature}" for signature in OLD_SIGNATURES),
        POST_FUNCTION,
        GUARDED_POST_FUNCTION,
        SCRIPT_READ_FUNCTION,
        APPEND_ONLY_FUNCTION,
        *_trigger_statements(),
        *INDEXES,
    ]


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
        cursor.execute("DROP FUNCTION IF EXISTS ledger_post_guarded CASCADE")
        cursor.execute("DROP FUNCTION IF EXISTS ledger_post CASCADE")
        cursor.execute("DROP FUNCTION IF EXISTS ledger_script_read CASCADE")
