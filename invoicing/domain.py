"""Pure invoicing rules over plain data (no database): the ledger facts of an order, tax per
line, what documents each model issues, credit notes per bearer share, periodic documents,
and the tie-out of documents against the ledger facts.

Rounding rule (one, everywhere): prices are tax-inclusive; a line's tax is
`gross * bps / (10000 + bps)` rounded to the nearest minor unit, halves away from zero
(symmetrically for negative lines), and `net = gross - tax`. A document's totals are the sums
of its lines, so `total_gross = total_net + total_tax` exactly.

Credit allocation rule (one, everywhere): a credit of `x` on a document is spread over the
document's lines in proportion to what remains on each (its gross less what earlier credit
notes took from it; discount lines included, so a partial refund gives back the same fraction
of the discount): line i's exact share is `x * remaining_i / sum(remaining)`; each share is
rounded down to the minor unit, and the units left over (fewer than the lines) go one each
to the lines with the largest remainders, the earlier position first on a tie. Shares sum to
`x` exactly and never exceed what remains on a line (`allocate`). Each credit line names the
original line it reduces (`original_position`) and carries that line's tax rate.

Signs: invoices carry positive lines except discounts; credit notes carry negative lines and
negative totals, so that summing a party's documents gives its net position.

Each line names the ledger account whose movement it justifies (`account`) and, when one
party pays another (the model B commission, the model C purchase), the account it comes out of
(`counter_account`). `coupon` stands for the campaign's funding of the order. A line that
restates money another document justifies (the delivery on a customer's invoice, justified by
the rider's statement) names no account. The tie-out: per order and account,
sum(lines with account) - sum(lines with counter_account) = the ledger's movement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

PLATFORM = "platform"
FEES = "platform:fees"
COUPON = "coupon"


class InvoicingRuleError(Exception):
    """A document cannot be planned (code says why); nothing is issued."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


# --- tax ------------------------------------------------------------------------------------


def tax_split(gross: int, bps: int) -> tuple[int, int]:
    """(net, tax) of a tax-inclusive amount, by the module's rounding rule."""
    if not 0 <= bps <= 10000:
        raise ValueError(f"tax rate out of range: {bps} bps")
    if gross == 0 or bps == 0:
        return gross, 0
    quotient, remainder = divmod(abs(gross) * bps, 10000 + bps)
    if 2 * remainder >= 10000 + bps:
        quotient += 1
    tax = quotient if gross > 0 else -quotient
    return gross - tax, tax


@dataclass(frozen=True)
class Rates:
    food_bps: int  # the restaurant's
    services_bps: int  # the platform's services (commission, delivery)
    rider_bps: int


# --- ledger facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditEvent:
    """Money given back to the customer after delivery, by bearer: a refund (`refund:<pk>`)
    or a lost dispute (`dispute:<pk>`). `shares` maps the bearer's ledger account to the
    amount it bore."""

    key: str
    tx_id: int
    at: datetime
    shares: dict[str, int]

    @property
    def amount(self) -> int:
        return sum(self.shares.values())


@dataclass
class OrderFacts:
    """What the ledger says about an order (read by `ledger_facts`)."""

    order_id: int
    asset: str
    customer: str  # "customer:<id>"
    restaurant: str  # "restaurants:007"
    restaurant_id: int
    rider: str | None = None
    rider_id: int | None = None
    paid: int = 0  # gross captured (stripe:balance -> payments:<ch>)
    payment_tx: int | None = None
    coupon: int = 0  # the campaign's money into the order (payment transaction)
    split_tx: int | None = None
    split_at: datetime | None = None
    restaurant_amt: int = 0
    fees_amt: int = 0
    rider_amt: int = 0
    pre_refunds: int = 0  # refunded from the order's account before the split
    pre_refund_txs: list[int] = field(default_factory=list)
    credits: list[CreditEvent] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.split_tx is not None

    @property
    def customer_net(self) -> int:
        """What the customer's documents must add up to: the split (what the order held once
        delivered: paid + coupon - refunds before delivery) less the coupon, less what was
        given back after delivery. Read from the split rather than the payment so that a
        refund claimed before delivery but confirmed by Stripe after it counts once."""
        split = self.restaurant_amt + self.fees_amt + self.rider_amt
        return split - self.coupon - sum(c.amount for c in self.credits)

    def ledger_movements(self) -> dict[str, int]:
        """Net movement per account justified by documents (see the module docstring)."""
        moves: dict[str, int] = {}

        def add(account: str, amount: int) -> None:
            moves[account] = moves.get(account, 0) + amount

        if self.delivered:
            add(self.restaurant, self.restaurant_amt)
            add(FEES, self.fees_amt)
            add(COUPON, -self.coupon)
        for credit in self.credits:
            for account, amount in credit.shares.items():
                if not account.startswith("riders:"):
                    add(account, -amount)
        return moves


# --- planned documents -------------------------------------------------------------------------


@dataclass
class Line:
    kind: str
    description: str
    gross: int
    tax_bps: int
    account: str = ""
    counter_account: str = ""
    tx_id: int | None = None
    order_id: int | None = None
    original_position: int | None = None  # credit lines: the original's line they reduce

    @property
    def net_tax(self) -> tuple[int, int]:
        return tax_split(self.gross, self.tax_bps)


@dataclass
class Doc:
    key: str
    kind: str
    model: str
    issuer: str
    recipient: str
    customer_facing: bool
    lines: list[Line]
    order_id: int | None = None
    period: str | None = None  # "YYYY-MM"
    original_key: str | None = None

    @property
    def total(self) -> int:
        return sum(line.gross for line in self.lines)

    @property
    def ledger_txs(self) -> list[int]:
        return sorted({line.tx_id for line in self.lines if line.tx_id is not None})


def order_doc_key(order_id: int, role: str) -> str:
    return f"order:{order_id}:{role}"


def _kept(lines: list[Line]) -> list[Line]:
    """Zero-amount lines are left out (a free delivery prints no delivery line)."""
    return [line for line in lines if line.gross != 0]


def plan_order_documents(facts: OrderFacts, model: str, rates: Rates) -> list[Doc]:
    """The documents of a delivered order, from its payment and split. A document whose
    lines are all zero is not issued."""
    if not facts.delivered:
        raise InvoicingRuleError(f"order {facts.order_id} has no split yet", code="not_delivered")
    oid, tx = facts.order_id, facts.split_tx
    r, fees, d, k = facts.restaurant_amt, facts.fees_amt, facts.rider_amt, facts.coupon
    food = r + fees
    R = facts.restaurant

    def line(kind: str, text: str, gross: int, bps: int, account: str = "", counter: str = ""):
        source = facts.payment_tx if kind == "discount" else tx
        return Line(kind, text, gross, bps, account, counter, source, oid)

    docs: list[Doc] = []
    if model == "A":
        on_restaurant = min(k, r)
        docs.append(
            Doc(
                order_doc_key(oid, "restaurant"),
                "invoice",
                "A",
                R,
                facts.customer,
                True,
                _kept(
                    [
                        line("food", f"Food, order {oid}", r, rates.food_bps, R),
                        line(
                            "discount",
                            "Coupon (funded by the campaign)",
                            -on_restaurant,
                            rates.food_bps,
                            COUPON,
                        ),
                    ]
                ),
                oid,
            )
        )
        docs.append(
            Doc(
                order_doc_key(oid, "platform"),
                "invoice",
                "A",
                PLATFORM,
                facts.customer,
                True,
                _kept(
                    [
                        line(
                            "service",
                            "Service fee (platform commission)",
                            fees,
                            rates.services_bps,
                            FEES,
                        ),
                        line("delivery", "Delivery", d, rates.services_bps),
                        line(
                            "discount",
                            "Coupon, remainder (funded by the campaign)",
                            -(k - on_restaurant),
                            rates.services_bps,
                            COUPON,
                        ),
                    ]
                ),
                oid,
            )
        )
    elif model == "B":
        docs.append(
            Doc(
                order_doc_key(oid, "restaurant"),
                "invoice",
                "B",
                R,
                facts.customer,
                True,
                _kept(
                    [
                        line("food", f"Food, order {oid}", food, rates.food_bps, R),
                        line("delivery", "Delivery", d, rates.services_bps, R),
                        line(
                            "discount",
                            "Coupon (funded by the campaign)",
                            -k,
                            rates.food_bps,
                            COUPON,
                        ),
                    ]
                ),
                oid,
            )
        )
    elif model == "C":
        docs.append(
            Doc(
                order_doc_key(oid, "self_billing"),
                "self_billing",
                "C",
                R,
                PLATFORM,
                False,
                _kept(
                    [
                        line(
                            "food",
                            f"Food sold to the platform, order {oid}",
                            r,
                            rates.food_bps,
                            R,
                            FEES,
                        )
                    ]
                ),
                oid,
            )
        )
        docs.append(
            Doc(
                order_doc_key(oid, "platform"),
                "invoice",
                "C",
                PLATFORM,
                facts.customer,
                True,
                _kept(
                    [
                        line("food", f"Food, order {oid}", food, rates.food_bps, FEES),
                        line("delivery", "Delivery", d, rates.services_bps),
                        line(
                            "discount",
                            "Coupon (funded by the campaign)",
                            -k,
                            rates.food_bps,
                            COUPON,
                        ),
                    ]
                ),
                oid,
            )
        )
    else:
        raise InvoicingRuleError(f"unknown invoicing model {model!r}", code="unknown_model")
    return [doc for doc in docs if doc.lines]


def allocate(amount: int, remaining: list[int]) -> list[int]:
    """Split `amount` over lines in proportion to `remaining` (the module's allocation rule).
    Shares sum to `amount` exactly and each lies between 0 and its line's remaining (a line
    with a negative remaining, a discount, gets a negative share or 0). Raises ValueError
    unless 0 <= amount <= sum(remaining)."""
    total = sum(remaining)
    if amount < 0 or amount > total:
        raise ValueError(f"cannot allocate {amount} over lines that total {total}")
    if amount == 0:
        return [0] * len(remaining)
    shares: list[int] = []
    leftovers: list[tuple[int, int]] = []  # (-remainder, position): largest remainder first
    for position, rem in enumerate(remaining):
        share, remainder = divmod(amount * rem, total)  # floor, remainder in [0, total)
        shares.append(share)
        if remainder:
            leftovers.append((-remainder, position))
    for _, position in sorted(leftovers)[: amount - sum(shares)]:
        shares[position] += 1
    return shares


@dataclass
class IssuedLine:
    """A line of an issued document, as credit notes need it."""

    position: int
    kind: str
    gross: int
    tax_bps: int
    credited: int = 0  # taken by credit notes so far, in the line's own sign

    @property
    def remaining(self) -> int:
        return self.gross - self.credited


@dataclass
class IssuedDoc:
    """An issued (or planned in the same batch) document of the order, as credit notes need
    it. `plan_credit_notes` records on its lines what it credits, so that a later event of
    the same batch sees only the room left."""

    key: str
    lines: list[IssuedLine]

    @property
    def remaining(self) -> int:
        return sum(line.remaining for line in self.lines)


def issued_from(doc: Doc) -> IssuedDoc:
    return IssuedDoc(
        doc.key,
        [IssuedLine(i, x.kind, x.gross, x.tax_bps) for i, x in enumerate(doc.lines, start=1)],
    )


def platform_borne(account: str, restaurant: str) -> bool:
    """A share the platform bears (platform:losses for refunds, platform:disputes)."""
    return account != restaurant and not account.startswith("riders:")


def _customer_targets(model: str, account: str, restaurant: str) -> list[str]:
    """Which customer document a bearer's share credits first, then where it spills."""
    if model == "A":
        first = "restaurant" if account == restaurant else "platform"
        return [first, "platform" if first == "restaurant" else "restaurant"]
    if model == "B":
        return ["restaurant"]
    return ["platform"]


def _credit_lines(
    doc: IssuedDoc, amount: int, text: str, account: str, counter: str, event: CreditEvent, oid: int
) -> list[Line]:
    """Credit `amount` on `doc` by the allocation rule (one line per original line that gets
    a share, at its rate), recording it on `doc`."""
    shares = allocate(amount, [line.remaining for line in doc.lines])
    out = []
    for line, share in zip(doc.lines, shares, strict=True):
        if share == 0:
            continue
        line.credited += share
        out.append(
            Line(
                "refund",
                f"{text}: {line.kind} (line {line.position})",
                -share,
                line.tax_bps,
                account,
                counter,
                event.tx_id,
                oid,
                line.position,
            )
        )
    return out


def plan_credit_notes(
    facts: OrderFacts, model: str, event: CreditEvent, issued: dict[str, IssuedDoc]
) -> list[Doc]:
    """Credit notes for one refund or lost dispute, per bearer share, on the customer document
    of the party that bears it, spilling to the order's other customer document when the
    first cannot credit that much:
    - A: the platform's share (and the rider's) on the platform's invoice, the restaurant's on
      the restaurant's;
    - B: everything on the restaurant's invoice, the customer's only document (only its issuer
      can credit it). A share the platform bears is tagged with the restaurant's account: the
      restaurant's sale is reduced, and the platform makes the restaurant whole on its own
      document, a compensation line on the restaurant's commission invoice of the month of
      the refund (`plan_commission_invoice`), which is what justifies platform:losses;
    - C: the platform's invoice (the merchant of record); the restaurant's share also credits
      its self-billing invoice.
    Each credit is spread over the document's lines by the allocation rule and recorded in
    `issued`. Raises InvoicingRuleError (`credit_exceeds_documents`) when the order's
    documents cannot credit the whole amount."""
    oid, R = facts.order_id, facts.restaurant
    per_doc: dict[str, list[Line]] = {}
    self_billing: list[Line] = []
    for account in sorted(event.shares):
        amount = event.shares[account]
        if amount <= 0:
            continue
        left = amount
        who = _bearer_words(account, R)
        text = f"Refund ({who}), order {oid}"
        for role in _customer_targets(model, account, R):
            if left == 0:
                break
            if role not in issued or issued[role].remaining <= 0:
                continue
            take = min(left, issued[role].remaining)
            left -= take
            if account.startswith("riders:"):
                tags: list[tuple[int, str]] = [(take, "")]
            elif model == "B":
                tags = [(take, R)]
            elif model == "C" and account == R:
                room = issued["self_billing"].remaining if "self_billing" in issued else 0
                covered = max(0, min(take, room))
                if covered:
                    self_billing += _credit_lines(
                        issued["self_billing"], covered, f"Credit, order {oid} ({event.key})",
                        R, FEES, event, oid,
                    )  # fmt: skip
                tags = [(covered, FEES), (take - covered, R)]
            else:
                tags = [(take, account)]
            for part, tag in tags:
                if part:
                    lines = _credit_lines(issued[role], part, text, tag, "", event, oid)
                    per_doc.setdefault(role, []).extend(lines)
        if left:
            raise InvoicingRuleError(
                f"{event.key} of order {oid}: {amount} borne by {account}, but the order's "
                f"documents can credit only {amount - left} more",
                code="credit_exceeds_documents",
            )
    docs = []
    for role, lines in per_doc.items():
        docs.append(
            Doc(
                f"{event.key}:{role}",
                "credit_note",
                model,
                R if role == "restaurant" else PLATFORM,
                facts.customer,
                True,
                lines,
                oid,
                original_key=issued[role].key,
            )
        )
    if self_billing:
        docs.append(
            Doc(
                f"{event.key}:self_billing",
                "credit_note",
                model,
                R,
                PLATFORM,
                False,
                self_billing,
                oid,
                original_key=issued["self_billing"].key,
            )
        )
    return docs


def _bearer_words(account: str, restaurant: str) -> str:
    if account == restaurant:
        return "borne by the restaurant"
    if account.startswith("riders:"):
        return "borne by the rider"
    return "borne by the platform"


def month_end_pending(facts: OrderFacts, model: str, closed: Callable[[str], bool]) -> set[str]:
    """The accounts of an order that only month-end documents finish justifying, while their
    month is open: model B's restaurant and platform:fees until the commission invoice of the
    delivery's month, and a platform-borne share (with the restaurant) until the commission
    invoice of the refund's month carries its compensation."""
    if model != "B":
        return set()
    pending: set[str] = set()
    if facts.split_at is not None and not closed(month_of(facts.split_at)):
        pending |= {facts.restaurant, FEES}
    for credit in facts.credits:
        if closed(month_of(credit.at)):
            continue
        borne = {a for a, n in credit.shares.items() if n and platform_borne(a, facts.restaurant)}
        if borne:
            pending |= borne | {facts.restaurant}
    return pending


# --- periodic documents ---------------------------------------------------------------------


def month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def plan_commission_invoice(
    restaurant: str, period: str, orders: list[OrderFacts], rates_services: int
) -> Doc | None:
    """Model B: the platform's monthly invoice to a restaurant: its commission and the
    delivery service of each order split in `period`, less a compensation line for each share
    of a refund or lost dispute booked in `period` that the platform bore (the restaurant
    credited its customer for it; the platform gives it back: see `plan_credit_notes`)."""
    lines: list[Line] = []
    for facts in sorted(orders, key=lambda f: f.order_id):
        oid = facts.order_id
        if facts.split_at is not None and month_of(facts.split_at) == period:
            lines += [
                Line(
                    "commission",
                    f"Commission, order {oid}",
                    facts.fees_amt,
                    rates_services,
                    FEES,
                    restaurant,
                    facts.split_tx,
                    oid,
                ),
                Line(
                    "delivery",
                    f"Delivery service, order {oid}",
                    facts.rider_amt,
                    rates_services,
                    "",
                    restaurant,
                    facts.split_tx,
                    oid,
                ),
            ]
        for credit in facts.credits:
            if month_of(credit.at) != period:
                continue
            for account in sorted(credit.shares):
                if platform_borne(account, facts.restaurant) and credit.shares[account]:
                    lines.append(
                        Line(
                            "compensation",
                            f"Refund borne by the platform, order {oid} ({credit.key})",
                            -credit.shares[account],
                            rates_services,
                            account,
                            restaurant,
                            credit.tx_id,
                            oid,
                        )
                    )
    lines = _kept(lines)
    if not lines:
        return None
    return Doc(
        f"commission:{restaurant}:{period}",
        "commission",
        "B",
        PLATFORM,
        restaurant,
        False,
        lines,
        None,
        period,
    )


def plan_rider_statement(
    rider: str, period: str, orders: list[OrderFacts], rider_bps: int
) -> Doc | None:
    """The platform's monthly self-billing statement for a rider: delivery earnings of the
    orders split in `period`, less the refund shares the rider bore in `period`."""
    lines: list[Line] = []
    for facts in sorted(orders, key=lambda f: f.order_id):
        oid = facts.order_id
        if facts.rider == rider and facts.split_at and month_of(facts.split_at) == period:
            lines.append(
                Line(
                    "delivery",
                    f"Delivery, order {oid}",
                    facts.rider_amt,
                    rider_bps,
                    rider,
                    "",
                    facts.split_tx,
                    oid,
                )
            )
        for credit in facts.credits:
            share = credit.shares.get(rider, 0)
            if share and month_of(credit.at) == period:
                lines.append(
                    Line(
                        "refund",
                        f"Refund share, order {oid} ({credit.key})",
                        -share,
                        rider_bps,
                        rider,
                        "",
                        credit.tx_id,
                        oid,
                    )
                )
    lines = _kept(lines)
    if not lines:
        return None
    return Doc(
        f"rider:{rider}:{period}",
        "rider_statement",
        "",
        rider,
        PLATFORM,
        False,
        lines,
        None,
        period,
    )


def rider_ledger_by_month(facts: OrderFacts) -> dict[tuple[str, str], int]:
    """The rider movements of an order per (rider account, month)."""
    out: dict[tuple[str, str], int] = {}
    if facts.rider and facts.split_at and facts.rider_amt:
        key = (facts.rider, month_of(facts.split_at))
        out[key] = out.get(key, 0) + facts.rider_amt
    for credit in facts.credits:
        for account, amount in credit.shares.items():
            if account.startswith("riders:") and amount:
                key = (account, month_of(credit.at))
                out[key] = out.get(key, 0) - amount
    return out
