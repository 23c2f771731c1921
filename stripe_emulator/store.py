"""Object storage with Stripe-style listing: in memory, optionally written through to SQLite.

Every object lives in memory (dict by id) and in ordered indexes: one per (account, kind)
and one per (account, kind, field, value) for the fields lists filter on. Objects are
appended in `created` order (the emulator clock never goes back), so a page is a bisect on
`created` plus a walk from the cursor's position: listing is O(page), never O(n^2).

With a `db_path`, every change is also written to SQLite (one row per object, JSON body)
and the indexes are rebuilt from it on start, so a demo can restart and keep its state.
Not thread-safe on its own: the caller (EmulatorState) holds its lock around every call.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
IndexKey = tuple[str, ...]


class _Index:
    __slots__ = ("created", "ids", "pos")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.created: list[int] = []
        self.pos: dict[str, int] = {}

    def append(self, object_id: str, created: int) -> None:
        if object_id in self.pos:
            return
        if self.created and created < self.created[-1]:
            created = self.created[-1]  # keep the list sorted for bisect
        self.pos[object_id] = len(self.ids)
        self.ids.append(object_id)
        self.created.append(created)

    def __len__(self) -> int:
        return len(self.ids)


class Store:
    """In-memory object store with ordered indexes and optional SQLite persistence."""

    def __init__(self, db_path: str | None = None) -> None:
        self.db_path = db_path if db_path not in (None, "", ":memory:") else None
        self._db: sqlite3.Connection | None = None
        self._init_memory()
        if self.db_path:
            self._db = sqlite3.connect(self.db_path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
                " kind TEXT NOT NULL, account TEXT NOT NULL, idx TEXT NOT NULL, body TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL,"
                " value TEXT NOT NULL, PRIMARY KEY (ns, key))"
            )
            self._db.commit()
            self._load()

    def _init_memory(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.kind_of: dict[str, str] = {}
        self.owner: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._memberships: dict[str, list[list[str]]] = {}
        self._indexes: dict[IndexKey, _Index] = {}
        self._next_seq = 0
        self._dirty: set[str] = set()
        self._kv_dirty: dict[tuple[str, str], str | None] = {}
        self.kv: dict[str, dict[str, Any]] = {}

    # -- writing ---------------------------------------------------------------------------

    def insert(self, kind: str, account: str, obj: Obj, index_fields: Iterable[str] = ()) -> Obj:
        object_id = obj["id"]
        self.objects[object_id] = obj
        self.kind_of[object_id] = kind
        self.owner[object_id] = account
        self._seq[object_id] = self._next_seq
        self._next_seq += 1
        self._memberships[object_id] = []
        created = int(obj.get("created") or 0)
        self._index((account, kind)).append(object_id, created)
        for field in index_fields:
            value = obj.get(field)
            if isinstance(value, str) and value:
                self.add_to_index(object_id, field, value)
        self._dirty.add(object_id)
        return obj

    def add_to_index(self, object_id: str, field: str, value: str) -> None:
        """Add an object to the secondary index `field == value` (also after insert)."""
        kind = self.kind_of[object_id]
        account = self.owner[object_id]
        created = int(self.objects[object_id].get("created") or 0)
        self._index((account, kind, field, value)).append(object_id, created)
        self._memberships[object_id].append([field, value])
        self._dirty.add(object_id)

    def touch(self, object_id: str) -> None:
        """Mark an object changed (in place) so the next commit persists it."""
        self._dirty.add(object_id)

    def kv_set(self, ns: str, key: str, value: Any) -> None:
        self.kv.setdefault(ns, {})[key] = value
        self._kv_dirty[(ns, key)] = json.dumps(value)

    def kv_get(self, ns: str, key: str, default: Any = None) -> Any:
        return self.kv.get(ns, {}).get(key, default)

    def kv_delete(self, ns: str, key: str) -> None:
        self.kv.get(ns, {}).pop(key, None)
        self._kv_dirty[(ns, key)] = None

    def commit(self) -> None:
        if self._db is None:
            self._dirty.clear()
            self._kv_dirty.clear()
            return
        if not self._dirty and not self._kv_dirty:
            return
        rows = []
        for object_id in self._dirty:
            obj = self.objects.get(object_id)
            if obj is None:
                continue
            rows.append(
                (
                    object_id,
                    self._seq[object_id],
                    self.kind_of[object_id],
                    self.owner[object_id],
                    json.dumps(self._memberships[object_id]),
                    json.dumps(obj),
                )
            )
        self._db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)", rows)
        for (ns, key), value in self._kv_dirty.items():
            if value is None:
                self._db.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (ns, key))
            else:
                self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (ns, key, value))
        self._db.commit()
        self._dirty.clear()
        self._kv_dirty.clear()

    def clear(self) -> None:
        """Forget everything (memory and database)."""
        self._init_memory()
        if self._db is not None:
            self._db.execute("DELETE FROM objects")
            self._db.execute("DELETE FROM kv")
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self.commit()
            self._db.close()
            self._db = None

    def _load(self) -> None:
        assert self._db is not None
        cursor = self._db.execute(
            "SELECT id, seq, kind, account, idx, body FROM objects ORDER BY seq"
        )
        for object_id, seq, kind, account, idx, body in cursor:
            obj = json.loads(body)
            self.objects[object_id] = obj
            self.kind_of[object_id] = kind
            self.owner[object_id] = account
            self._seq[object_id] = seq
            self._next_seq = max(self._next_seq, seq + 1)
            memberships = json.loads(idx)
            self._memberships[object_id] = memberships
            created = int(obj.get("created") or 0)
            self._index((account, kind)).append(object_id, created)
            for field, value in memberships:
                self._index((account, kind, field, value)).append(object_id, created)
        for ns, key, value in self._db.execute("SELECT ns, key, value FROM kv"):
            self.kv.setdefault(ns, {})[key] = json.loads(value)
        self._dirty.clear()

    # -- reading ---------------------------------------------------------------------------

    def _index(self, key: IndexKey) -> _Index:
        index = self._indexes.get(key)
        if index is None:
            index = _Index()
            self._indexes[key] = index
        return index

    def get(self, object_id: str) -> Obj | None:
        return self.objects.get(object_id)

    def count(self, kind: str, account: str | None = None) -> int:
        if account is not None:
            index = self._indexes.get((account, kind))
            return len(index) if index else 0
        return sum(
            len(index) for key, index in self._indexes.items() if len(key) == 2 and key[1] == kind
        )

    def iter_kind(self, kind: str, account: str | None = None) -> Iterable[Obj]:
        """All objects of a kind in creation order (for counters and assertions)."""
        keys = [
            key
            for key in self._indexes
            if len(key) == 2 and key[1] == kind and (account is None or key[0] == account)
        ]
        for key in keys:
            for object_id in self._indexes[key].ids:
                yield self.objects[object_id]

    def ids_in_index(self, account: str, kind: str, field: str, value: str) -> list[str]:
        index = self._indexes.get((account, kind, field, value))
        return list(index.ids) if index else []

    def page(
        self,
        kind: str,
        account: str,
        *,
        index: tuple[str, str] | None = None,
        eq: dict[str, Any] | None = None,
        created: dict[str, int] | None = None,
        limit: int = 10,
        starting_after: str | None = None,
        ending_before: str | None = None,
        predicate: Callable[[Obj], bool] | None = None,
    ) -> tuple[list[Obj], bool] | None:
        """One page, newest first, and whether more exist beyond it.

        `index=(field, value)` walks that secondary index instead of the whole kind; `eq`
        and `predicate` are checked while walking. Returns None when a cursor id is not in
        the walked index (the caller reports it as an invalid parameter).
        """
        key: IndexKey = (account, kind) if index is None else (account, kind, *index)
        idx = self._indexes.get(key)
        if idx is None:
            return [], False
        eq = eq or {}
        lo, hi = 0, len(idx)
        created = created or {}
        if "gte" in created:
            lo = max(lo, bisect.bisect_left(idx.created, created["gte"]))
        if "gt" in created:
            lo = max(lo, bisect.bisect_right(idx.created, created["gt"]))
        if "lte" in created:
            hi = min(hi, bisect.bisect_right(idx.created, created["lte"]))
        if "lt" in created:
            hi = min(hi, bisect.bisect_left(idx.created, created["lt"]))

        def matches(obj: Obj) -> bool:
            for field, value in eq.items():
                if obj.get(field) != value:
                    return False
            return predicate is None or predicate(obj)

        found: list[Obj] = []
        objects = self.objects
        ids = idx.ids
        if ending_before is not None and starting_after is None:
            cursor = idx.pos.get(ending_before)
            if cursor is None:
                return None
            i = max(lo, cursor + 1)
            while i < hi and len(found) <= limit:
                obj = objects[ids[i]]
                if matches(obj):
                    found.append(obj)
                i += 1
            has_more = len(found) > limit
            found = found[:limit]
            found.reverse()
            return found, has_more

        if starting_after is not None:
            cursor = idx.pos.get(starting_after)
            if cursor is None:
                return None
            hi = min(hi, cursor)
        i = hi - 1
        while i >= lo and len(found) <= limit:
            obj = objects[ids[i]]
            if matches(obj):
                found.append(obj)
            i -= 1
        has_more = len(found) > limit
        return found[:limit], has_more
