"""Numbering and writing planned documents (`documents_insert`), inside the caller's
transaction and after the orders' locks.

Numbering: the (series, year) counter rows are locked (invoicing/lock_objects.py) once per
batch, each document takes the next number of its series, and the counters are written back
in the same transaction that inserts the documents: a batch's numbers are a contiguous block
per series that commits or rolls back with the documents, so a series has no gap and no
number twice, whatever runs concurrently (the next batch waits for the lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from invoicing import bulk, conf
from invoicing.domain import PLATFORM, Doc
from invoicing.lock_objects import series_lock
from invoicing.models import Invoice, InvoiceLine, InvoicingProfile, NumberSeries
from marketplace.models import Customer, Restaurant, Rider
from marketplace.models.restaurants import ledger_id


def series_of(party: str) -> str:
    if party == PLATFORM:
        return "P"
    prefix, _, number = party.partition(":")
    return f"{'R' if prefix == 'restaurants' else 'D'}{int(number):04d}"


def legal_mention(doc: Doc, names: dict[str, str], original: str = "") -> str:
    platform = names[PLATFORM]
    issuer = names.get(doc.issuer, doc.issuer)
    if doc.kind == "rider_statement":
        text = (
            f"Self-billing: statement issued by {platform} in the name and on behalf of the "
            f"rider {issuer}, who accepts it as their invoice (auto-facturation)."
        )
    elif doc.kind == "self_billing" or (doc.kind == "credit_note" and not doc.customer_facing):
        text = (
            f"Self-billing: invoice issued by {platform}, the customer, in the name and on "
            f"behalf of the supplier {issuer} (auto-facturation). Model C: merchant mode."
        )
    elif doc.kind == "commission":
        text = (
            f"Model B: {platform}'s commission and delivery service to the restaurant, less "
            "the refunds to its customers that the platform bore."
        )
    elif doc.issuer != PLATFORM:
        text = (
            f"Invoice issued by {platform} in the name and on behalf of {issuer} "
            f"(billing mandate). Model {doc.model}: "
            + (
                "the food; the platform invoices its own fees separately."
                if doc.model == "A"
                else "the restaurant sells the whole order; the platform invoices it its commission."
            )
        )
    else:
        text = (
            f"Invoice of {platform} for its own services (model A)."
            if doc.model == "A"
            else f"{platform} sells as merchant of record (model C)."
        )
    if original:
        text = f"Credit note on {original}. " + text
    return text


def _party_details(docs: Sequence[Doc]) -> dict[str, dict[str, str]]:
    """Issuer and recipient details at issue time (the latest profile of a restaurant)."""
    platform = dict(conf.get("INVOICING_PLATFORM"))
    parties = {d.issuer for d in docs} | {d.recipient for d in docs}
    details: dict[str, dict[str, str]] = {PLATFORM: platform}
    restaurant_ids = [int(p.split(":")[1]) for p in parties if p.startswith("restaurants:")]
    rider_ids = [int(p.split(":")[1]) for p in parties if p.startswith("riders:")]
    customer_ids = [int(p.split(":")[1]) for p in parties if p.startswith("customer:")]
    profiles: dict[int, tuple[str, str, str]] = {}
    for restaurant_id, *legal in (
        InvoicingProfile.objects.filter(restaurant_id__in=restaurant_ids)
        .order_by("effective_from", "id")
        .values_list("restaurant_id", "legal_name", "address", "tax_id")
    ):
        profiles[restaurant_id] = (legal[0], legal[1], legal[2])
    for rid, name, email in Restaurant.objects.filter(pk__in=restaurant_ids).values_list(
        "id", "name", "email"
    ):
        legal_name, address, tax_id = profiles.get(rid, ("", "", ""))
        details[f"restaurants:{ledger_id(rid)}"] = {
            "name": legal_name or name,
            "address": address,
            "tax_id": tax_id,
            "email": email,
        }
    for did, name, email in Rider.objects.filter(pk__in=rider_ids).values_list(
        "id", "name", "email"
    ):
        details[f"riders:{ledger_id(did)}"] = {"name": name, "email": email}
    for cid, name, email in Customer.objects.filter(pk__in=customer_ids).values_list(
        "id", "name", "email"
    ):
        details[f"customer:{cid}"] = {"name": name or email, "email": email}
    for party in parties:
        details.setdefault(party, {"name": party})
    return details


def documents_insert(docs: Sequence[Doc], *, asset_of: dict[int | None, str], now: datetime) -> int:
    """Number and insert planned documents: originals first (a credit note may credit a
    document of the same batch), then credit notes. Returns how many."""
    if not docs:
        return 0
    year = now.astimezone(UTC).year
    ordered = sorted(docs, key=lambda d: bool(d.original_key))  # stable: originals first
    series = series_lock({(series_of(d.issuer), year) for d in ordered})
    details = _party_details(ordered)
    names = {party: d.get("name", party) for party, d in details.items()}
    details_json = {party: bulk.json_text(d) for party, d in details.items()}
    in_batch = {d.key for d in ordered}
    originals: dict[str, tuple[int | None, str]] = {
        key: (pk, number)
        for key, pk, number in Invoice.objects.filter(
            key__in=[d.original_key for d in ordered if d.original_key not in in_batch]
        ).values_list("key", "id", "display_number")
    }
    fast = bulk.fast()
    ids: list[int | None] = list(bulk.invoice_ids(len(ordered))) if fast else [None] * len(docs)
    invoices: list[list[Any]] = []
    lines: list[list[Any]] = []
    series_by_issuer = {d.issuer: series[(series_of(d.issuer), year)] for d in ordered}
    for pk, doc in zip(ids, ordered, strict=True):
        counter = series_by_issuer[doc.issuer]
        counter[1] += 1
        display = f"{counter[0]}-{year}-{counter[1]:06d}"
        original_id, original_number = originals.get(doc.original_key or "", (None, ""))
        gross = net = tax = 0
        for position, line in enumerate(doc.lines, start=1):
            line_net, line_tax = line.net_tax
            gross += line.gross
            net += line_net
            tax += line_tax
            lines.append(
                [
                    pk,
                    position,
                    line.order_id,
                    line.kind,
                    line.description[:300],
                    line.gross,
                    line.tax_bps,
                    line_tax,
                    line_net,
                    line.account,
                    line.counter_account,
                    line.tx_id,
                    line.original_position,
                ]
            )
        invoices.append(
            [
                pk,
                doc.key,
                doc.kind,
                doc.model,
                counter[0],
                year,
                counter[1],
                display,
                doc.issuer,
                doc.recipient,
                doc.customer_facing,
                details_json[doc.issuer],
                details_json[doc.recipient],
                legal_mention(doc, names, original_number),
                doc.order_id,
                date.fromisoformat(f"{doc.period}-01") if doc.period else None,
                doc.key.rsplit(":", 1)[0] if doc.kind == "credit_note" else "",
                original_id,
                asset_of.get(doc.order_id) or asset_of.get(None) or "USD/2",
                gross,
                tax,
                net,
                bulk.int_list_json(doc.ledger_txs),
                now,
            ]
        )
        originals[doc.key] = (pk, display)
    if fast:
        bulk.documents_copy(invoices, lines)
    else:
        _write_portable(ordered, invoices, lines)
    _series_save(series)
    return len(invoices)


def _write_portable(docs: Sequence[Doc], invoices: list[list[Any]], lines: list[list[Any]]) -> None:
    """`bulk_create`, originals first so that credit notes learn their originals' ids."""
    columns = bulk.INVOICE_COLUMNS
    key_at, original_at = columns.index("key"), columns.index("original_id")
    json_at = [columns.index(c) for c in bulk.JSON_COLUMNS]
    lines_of: dict[int, list[list[Any]]] = {}
    cursor = 0
    for index, doc in enumerate(docs):
        lines_of[index] = lines[cursor : cursor + len(doc.lines)]
        cursor += len(doc.lines)
    ids: dict[str, int] = {}
    for phase in (False, True):
        picked = [i for i, doc in enumerate(docs) if bool(doc.original_key) == phase]
        objs = []
        for i in picked:
            row = list(invoices[i])
            for at in json_at:
                row[at] = bulk.json_loads(row[at])
            if docs[i].original_key and row[original_at] is None:
                row[original_at] = ids[docs[i].original_key]  # type: ignore[index]
            objs.append(Invoice(**dict(zip(columns[1:], row[1:], strict=True))))
        Invoice.objects.bulk_create(objs)
        for i, obj in zip(picked, objs, strict=True):
            ids[invoices[i][key_at]] = obj.pk
        InvoiceLine.objects.bulk_create(
            [
                InvoiceLine(**dict(zip(bulk.LINE_COLUMNS, [obj.pk, *line[1:]], strict=True)))
                for i, obj in zip(picked, objs, strict=True)
                for line in lines_of[i]
            ]
        )


def _series_save(series: dict[tuple[str, int], list[Any]]) -> None:
    """Write the counters back (their rows are locked by this transaction)."""
    rows = [(row[2], row[1]) for row in series.values()]  # (id, last_number)
    if bulk.fast():
        bulk.execute(
            "UPDATE invoicing_numberseries AS s SET last_number = v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE s.id = v.id",
            [[pk for pk, _ in rows], [n for _, n in rows]],
        )
        return
    for pk, n in rows:
        NumberSeries.objects.filter(pk=pk).update(last_number=n)
