"""The Stripe webhook inbox as the dashboard reads it. This module is the one place in
`staff` that imports the inbox model (a refactor may move it to a `stripe_gateway` app: change
the import here and nowhere else).

Events are found by the Stripe objects their payload describes: `data.object.id` (pi_, ch_,
re_, dp_), `data.object.payment_intent` and `data.object.charge`. On PostgreSQL these three
expressions are indexed (staff migration 0002), so an order's events are three index probes
whatever the size of the inbox."""

from __future__ import annotations

from typing import Any

from django.db import connection

from stripe_gateway.models import StripeEvent

__all__ = ["StripeEvent", "events_for_objects"]

_ID = "(payload->'data'->'object'->>'id')"
_PI = "(payload->'data'->'object'->>'payment_intent')"
_CH = "(payload->'data'->'object'->>'charge')"


def events_for_objects(
    *, ids: list[str], payment_intent: str = "", charge: str = "", limit: int = 200
) -> list[StripeEvent]:
    """Inbox rows whose object is one of `ids`, or belongs to `payment_intent` / `charge`,
    oldest first by Stripe's creation time."""
    ids = [i for i in ids if i]
    if not ids and not payment_intent and not charge:
        return []
    if connection.vendor != "postgresql":
        from django.db.models import Q

        condition = Q(payload__data__object__id__in=ids) if ids else Q(pk__in=[])
        if payment_intent:
            condition |= Q(payload__data__object__payment_intent=payment_intent)
        if charge:
            condition |= Q(payload__data__object__charge=charge)
        return list(StripeEvent.objects.filter(condition).order_by("created", "id")[:limit])
    table = connection.ops.quote_name(StripeEvent._meta.db_table)
    clauses: list[str] = []
    params: list[Any] = []
    if ids:
        clauses.append(f"{_ID} = ANY(%s)")
        params.append(ids)
    if payment_intent:
        clauses.append(f"{_PI} = %s")
        params.append(payment_intent)
    if charge:
        clauses.append(f"{_CH} = %s")
        params.append(charge)
    sql = f"SELECT id FROM {table} WHERE {' OR '.join(clauses)} LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        pks = [row[0] for row in cursor.fetchall()]
    return list(StripeEvent.objects.filter(pk__in=pks).order_by("created", "id"))
