"""The emulator's state: objects, balances, the clock, events, and what handlers share.

`EmulatorState` owns the store and one re-entrant lock; every API operation runs under it
(`run`), so handlers never race. It knows nothing about HTTP: the server parses requests
and calls handlers from `stripe_emulator.resources` with a `Ctx`.

Money rules kept here (see the package README section):
- card charges cost 2.9% + 30 (half-up to the cent); a dispute costs 1500; refunds and
  transfers cost nothing (Stripe keeps the original charge fee);
- a balance transaction is `available` when `available_on <= now`; positive charge and
  top-up funds wait `available_delay_seconds` (0 by default: available immediately);
  debits are available at once. `advance_clock(seconds)` moves the emulator clock.
"""

from __future__ import annotations

import heapq
import json
import os
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import forms
from .errors import bad_param, no_such
from .store import Obj, Store

DEFAULT_API_VERSION = "2026-10-28.endive"
PLATFORM = ""  # the owner key of platform objects; connected accounts use their acct_ id
DISPUTE_FEE = 1500

# Secondary indexes per kind: list filters on these fields walk only matching objects.
INDEX_FIELDS: dict[str, tuple[str, ...]] = {
    "customer": ("email",),
    "account": (),
    "payment_intent": ("customer",),
    "charge": ("payment_intent", "customer", "transfer_group"),
    "refund": ("charge", "payment_intent"),
    "dispute": ("charge", "payment_intent"),
    "transfer": ("destination", "transfer_group", "source_transaction"),
    "transfer_reversal": ("transfer",),
    "payout": (),
    "topup": (),
    "balance_transaction": ("type", "source", "payout"),
    "event": ("type",),
    "webhook_endpoint": (),
}

_ALPHABET = string.digits + string.ascii_letters


def new_id(prefix: str) -> str:
    number = int.from_bytes(os.urandom(18), "big")
    chars = []
    for _ in range(24):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return f"{prefix}_{''.join(chars)}"


def card_fee(amount: int) -> int:
    """2.9% + 30 cents, the 2.9% rounded half up to the cent."""
    return (amount * 29 + 500) // 1000 + 30


class Rendered(dict[str, Any]):
    """A handler result that is already public JSON (a snapshot): `present` keeps it as is."""


@dataclass(frozen=True)
class Ctx:
    """Who is calling: the connected account (or PLATFORM) and the request's ids."""

    account: str = PLATFORM
    request_id: str | None = None
    idempotency_key: str | None = None
    api_key: str = ""


class EmulatorState:
    """All emulator data, guarded by `lock`."""

    def __init__(
        self,
        *,
        db_path: str | None = None,
        available_delay_seconds: int = 0,
        capture_delay_seconds: float = 0.0,
        idempotency_retention_seconds: int = 24 * 3600,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self.lock = threading.RLock()
        self.store = Store(db_path)
        self.available_delay_seconds = available_delay_seconds
        # Asynchronous capture: how long after a charge succeeds its balance transaction is
        # attached (and `charge.updated` sent). 0 = right after the confirming request.
        self.capture_delay_seconds = capture_delay_seconds
        # Stripe prunes idempotency keys once they are at least 24 hours old.
        self.idempotency_retention_seconds = idempotency_retention_seconds
        # Work Stripe does later (the async capture's attachment): (due, seq, callable).
        self._scheduled: list[tuple[float, int, Callable[[], None]]] = []
        self._scheduled_seq = 0
        self.api_version = api_version
        # Called with each new event once its operation finished (webhook dispatcher).
        self.event_sink: Callable[[Obj], None] | None = None
        # How many endpoints will receive an event (platform: False, connected: True).
        self.webhook_targets: Callable[[bool], int] = lambda connect: 0
        # Called with a webhook_endpoint object created or updated through the API.
        self.endpoint_hook: Callable[[Obj], None] | None = None
        self._outbox: list[Obj] = []
        self._rebuild_derived()

    # -- lifecycle -------------------------------------------------------------------------

    def _rebuild_derived(self) -> None:
        self.clock_offset = float(self.store.kv_get("meta", "clock_offset", 0.0))
        self._last_now = int(self.store.kv_get("meta", "last_now", 0))
        self.balances: dict[tuple[str, str], list[int]] = {}
        self._pending: list[tuple[int, str]] = []
        for txn in self.store.iter_kind("balance_transaction"):
            account = self.store.owner[txn["id"]]
            self._book(account, txn)

    def reset(self) -> None:
        with self.lock:
            self.store.clear()
            self._outbox.clear()
            self._scheduled.clear()
            self._rebuild_derived()

    def close(self) -> None:
        with self.lock:
            self.store.kv_set("meta", "last_now", self._last_now)
            self.store.close()

    @contextmanager
    def run(self) -> Iterator[None]:
        """Run one operation: under the lock, then persist and hand events to the sink."""
        with self.lock:
            try:
                self.tick()
                yield
            finally:
                self.store.commit()
                outbox, self._outbox = self._outbox, []
                if self.event_sink is not None:
                    for event in outbox:
                        self.event_sink(event)

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> int:
        current = int(time.time() + self.clock_offset)
        if current < self._last_now:
            current = self._last_now
        self._last_now = current
        return current

    def advance_clock(self, seconds: int) -> None:
        with self.run():
            self.clock_offset += seconds
            self.store.kv_set("meta", "clock_offset", self.clock_offset)

    def schedule(self, delay_seconds: float, action: Callable[[], None]) -> None:
        """Run `action` (under the lock, inside an operation) once the emulator clock has
        moved `delay_seconds` on: the next operation, the server's ticker or `run_due`."""
        self._scheduled_seq += 1
        due = time.time() + self.clock_offset + max(0.0, delay_seconds)
        heapq.heappush(self._scheduled, (due, self._scheduled_seq, action))

    def due_work(self) -> bool:
        """True when scheduled work or pending funds are due (the ticker's cheap check)."""
        now = time.time() + self.clock_offset
        return bool(
            (self._scheduled and self._scheduled[0][0] <= now)
            or (self._pending and self._pending[0][0] <= int(now))
        )

    def scheduled_count(self) -> int:
        return len(self._scheduled)

    def run_due(self) -> None:
        """Run whatever is due now (scheduled work, funds becoming available)."""
        with self.run():
            pass

    def tick(self) -> None:
        """Run scheduled work that is due, then make pending funds whose `available_on`
        passed available (balance.available)."""
        while self._scheduled and self._scheduled[0][0] <= time.time() + self.clock_offset:
            _, _, action = heapq.heappop(self._scheduled)
            action()
        if not self._pending:
            return
        now = self.now()
        touched: set[str] = set()
        while self._pending and self._pending[0][0] <= now:
            _, txn_id = heapq.heappop(self._pending)
            txn = self.store.get(txn_id)
            if txn is None or txn["status"] != "pending":
                continue
            txn["status"] = "available"
            self.store.touch(txn_id)
            account = self.store.owner[txn_id]
            slot = self.balances.setdefault((account, txn["currency"]), [0, 0])
            slot[1] -= txn["net"]
            slot[0] += txn["net"]
            touched.add(account)
        for account in sorted(touched):
            self.emit(None, account, "balance.available", self.balance_obj(account))

    # -- objects ---------------------------------------------------------------------------

    def insert(self, kind: str, account: str, obj: Obj) -> Obj:
        return self.store.insert(kind, account, obj, INDEX_FIELDS.get(kind, ()))

    def get_owned(
        self,
        kind: str,
        object_id: str | None,
        account: str,
        *,
        param: str = "id",
        label: str | None = None,
    ) -> Obj:
        obj = self.store.get(object_id) if object_id else None
        if (
            obj is None
            or object_id is None
            or self.store.kind_of[object_id] != kind
            or self.store.owner[object_id] != account
        ):
            raise no_such(label or kind, object_id or "", param=param)
        return obj

    def connected_account(self, account_id: str, *, param: str = "destination") -> Obj:
        obj = self.store.get(account_id)
        if obj is None or self.store.kind_of[account_id] != "account":
            raise no_such(
                "destination" if param == "destination" else "account", account_id, param=param
            )
        return obj

    def is_account(self, account_id: str) -> bool:
        return self.store.kind_of.get(account_id) == "account"

    # -- rendering -------------------------------------------------------------------------

    def render(self, obj: Obj) -> Obj:
        """The public JSON of a stored object (private `_` fields dropped, lists filled)."""
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        kind = obj.get("object")
        object_id = obj.get("id")
        if not isinstance(object_id, str):
            return out
        account = self.store.owner.get(object_id, PLATFORM)
        # `charge.refunds` is not returned (nor in events) unless expanded, since 2022-11-15:
        # `_expand` adds it for `expand[]=refunds`.
        if kind == "transfer":
            out["reversals"] = self._sublist(
                account,
                "transfer_reversal",
                "transfer",
                object_id,
                f"/v1/transfers/{object_id}/reversals",
            )
        elif kind == "dispute":
            out["balance_transactions"] = [
                self.render(self.store.objects[txn_id])
                for txn_id in obj.get("_balance_transactions", [])
            ]
        return out

    def _sublist(self, account: str, kind: str, field: str, value: str, url: str) -> Obj:
        ids = self.store.ids_in_index(account, kind, field, value)
        newest = list(reversed(ids))
        return {
            "object": "list",
            "data": [self.render(self.store.objects[i]) for i in newest[:10]],
            "has_more": len(newest) > 10,
            "total_count": len(newest),
            "url": url,
        }

    def present(self, result: Obj, expand: list[str]) -> Obj:
        """Render a handler's result (object or list) and apply `expand[]` paths."""
        if isinstance(result, Rendered):
            out = dict(result)
        elif result.get("object") == "list" and isinstance(result.get("data"), list):
            out = dict(result)
            out["data"] = [self.render(o) if "id" in o else dict(o) for o in result["data"]]
        elif isinstance(result.get("id"), str) and result["id"] in self.store.objects:
            out = self.render(result)
        else:
            out = dict(result)
        for path in expand:
            parts = path.split(".")
            if len(parts) > 4:
                raise bad_param(
                    f"You cannot expand more than 4 levels of a property. Property: {path}",
                    param="expand",
                )
            out = self._expand(out, parts, path)
        return out

    def _expand(self, node: Obj, parts: list[str], path: str) -> Obj:
        head, rest = parts[0], parts[1:]
        if head == "refunds" and node.get("object") == "charge" and "refunds" not in node:
            charge_id = str(node["id"])
            account = self.store.owner.get(charge_id, PLATFORM)
            node["refunds"] = self._sublist(
                account, "refund", "charge", charge_id, f"/v1/charges/{charge_id}/refunds"
            )
            return self._expand(node, parts, path) if rest else node
        if head not in node:
            raise bad_param(f"This property cannot be expanded ({path}).", param="expand")
        value = node[head]
        if isinstance(value, list):
            expanded: list[Any] = []
            for item in value:
                if isinstance(item, dict):
                    expanded.append(self._expand(dict(item), rest, path) if rest else item)
                elif isinstance(item, str):
                    expanded.append(self._expand_id(item, rest, path))
                else:
                    expanded.append(item)
            node[head] = expanded
            return node
        if value is None:
            return node
        if isinstance(value, str):
            node[head] = self._expand_id(value, rest, path)
            return node
        if isinstance(value, dict):
            node[head] = self._expand(dict(value), rest, path) if rest else value
            return node
        raise bad_param(f"This property cannot be expanded ({path}).", param="expand")

    def _expand_id(self, value: Any, rest: list[str], path: str) -> Any:
        target = self.store.get(value) if isinstance(value, str) else None
        if target is None:
            raise bad_param(f"This property cannot be expanded ({path}).", param="expand")
        rendered = self.render(target)
        return self._expand(rendered, rest, path) if rest else rendered

    # -- lists -----------------------------------------------------------------------------

    def list_page(
        self,
        kind: str,
        account: str,
        params: forms.Params,
        url: str,
        *,
        filters: Iterable[str] = (),
        predicate: Callable[[Obj], bool] | None = None,
        extra_eq: dict[str, Any] | None = None,
        allowed: Iterable[str] = (),
    ) -> Obj:
        """One Stripe list page. `filters` are equality filters taken from the params (the
        first one with a secondary index drives the walk); `allowed` names other accepted
        params the caller handles itself. Unknown params are refused, as on Stripe."""
        filters = tuple(filters)
        forms.check_allowed(
            params, ("limit", "starting_after", "ending_before", "created", *filters, *allowed)
        )
        limit = forms.get_int(params, "limit")
        if limit is None:
            limit = 10
        if not 1 <= limit <= 100:
            raise bad_param(
                "Invalid integer: limit must be between 1 and 100.",
                param="limit",
                code="parameter_invalid_integer",
            )
        starting_after = forms.get_str(params, "starting_after")
        ending_before = forms.get_str(params, "ending_before")
        created = forms.get_created_filter(params)
        indexed = INDEX_FIELDS.get(kind, ())
        index: tuple[str, str] | None = None
        eq: dict[str, Any] = dict(extra_eq or {})
        for field in filters:
            value = forms.get_str(params, field)
            if value is None:
                continue
            if index is None and field in indexed:
                index = (field, value)
            else:
                eq[field] = value
        page = self.store.page(
            kind,
            account,
            index=index,
            eq=eq,
            created=created,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            predicate=predicate,
        )
        if page is None:
            cursor = starting_after if starting_after is not None else ending_before
            param = "starting_after" if starting_after is not None else "ending_before"
            raise no_such(kind, cursor or "", param=param)
        data, has_more = page
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    # -- money -----------------------------------------------------------------------------

    def _book(self, account: str, txn: Obj) -> None:
        slot = self.balances.setdefault((account, txn["currency"]), [0, 0])
        if txn["status"] == "available":
            slot[0] += txn["net"]
        else:
            slot[1] += txn["net"]
            heapq.heappush(self._pending, (int(txn["available_on"]), txn["id"]))

    def available(self, account: str, currency: str) -> int:
        return self.balances.get((account, currency), [0, 0])[0]

    def add_txn(
        self,
        account: str,
        *,
        amount: int,
        currency: str,
        type_: str,
        category: str,
        source: str,
        fee: int = 0,
        fee_details: list[Obj] | None = None,
        description: str | None = None,
        available_on: int | None = None,
    ) -> Obj:
        created = self.now()
        if available_on is None:
            available_on = created
        txn = {
            "id": new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": available_on,
            "balance_type": "payments",
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": fee_details or [],
            "net": amount - fee,
            "reporting_category": category,
            "source": source,
            "status": "available" if available_on <= created else "pending",
            "type": type_,
        }
        self.insert("balance_transaction", account, txn)
        self._book(account, txn)
        return txn

    def funds_available_on(self) -> int:
        return self.now() + self.available_delay_seconds

    def balance_obj(self, account: str) -> Obj:
        currencies = sorted(cur for (acct, cur) in self.balances if acct == account) or ["usd"]

        def entry(currency: str, slot: int) -> Obj:
            amount = self.balances.get((account, currency), [0, 0])[slot]
            return {"amount": amount, "currency": currency, "source_types": {"card": amount}}

        balance: Obj = {
            "object": "balance",
            "available": [entry(c, 0) for c in currencies],
            "livemode": False,
            "pending": [entry(c, 1) for c in currencies],
        }
        if account == PLATFORM:
            balance["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
        return balance

    # -- events ----------------------------------------------------------------------------

    def emit(
        self,
        ctx: Ctx | None,
        account: str,
        type_: str,
        obj: Obj,
        previous_attributes: Obj | None = None,
    ) -> Obj:
        snapshot = json.loads(json.dumps(self.render(obj)))
        data: Obj = {"object": snapshot}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event: Obj = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": self.webhook_targets(account != PLATFORM),
            "request": {
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
            "type": type_,
        }
        if account != PLATFORM:
            event["account"] = account
        event["_delivery_success"] = None
        self.insert("event", account, event)
        self._outbox.append(event)
        return event

    def mark_delivered(self, event_id: str, success: bool) -> None:
        """Called by the webhook dispatcher after the last attempt for an event copy."""
        with self.lock:
            event = self.store.get(event_id)
            if event is None:
                return
            if success:
                event["pending_webhooks"] = max(0, int(event["pending_webhooks"]) - 1)
                event["_delivery_success"] = True
            elif event.get("_delivery_success") is None:
                event["_delivery_success"] = False
            self.store.touch(event_id)
            self.store.commit()

    # -- counters for tests ----------------------------------------------------------------

    def count(self, kind: str, account: str | None = None) -> int:
        with self.lock:
            return self.store.count(kind, account)

    def objects(self, kind: str, account: str | None = None) -> list[Obj]:
        """Rendered objects of a kind, oldest first (all accounts unless one is given)."""
        with self.lock:
            return [self.render(o) for o in self.store.iter_kind(kind, account)]

    def transfers_by_metadata(self, key: str = "payout_id") -> dict[str, int]:
        """How many transfers exist per value of `metadata[key]` (missing key not counted)."""
        with self.lock:
            counts: dict[str, int] = {}
            for transfer in self.store.iter_kind("transfer"):
                value = transfer.get("metadata", {}).get(key)
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
            return counts

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {kind: self.store.count(kind) for kind in INDEX_FIELDS}
