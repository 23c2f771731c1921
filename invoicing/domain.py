"""Pure invoicing rules over plain data (no database): the ledger facts of an order, tax per
line, what documents each model issues, credit notes per bearer share, periodic documents,
and the tie-out of documents against the ledger facts.

Rounding rule (one, everywhere): prices are tax-inclusive; a line's tax is
`gross * bps / (10000 + bps)` rounded to the nearest minor unit, halves away from zero
(symmetrically for negative lines), and `net = gross - tax`. A document's totals are the sums
of its lines, so `total_gross = total_net + total_tax` exactly.

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


@dataclass
class IssuedDoc:
    """An issued document of the order, as credit notes need it."""

    key: str
    total: int  # its total (positive)
    credited: int  # already credited by credit notes (positive)
    main_bps: int  # the rate of its first line: credit notes credit at that rate

    @property
    def remaining(self) -> int:
        return self.total - self.credited


def _customer_targets(model: str, account: str, restaurant: str) -> list[str]:
    """Which customer document a bearer's share credits first, then where it spills."""
    if model == "A":
        first = "restaurant" if account == restaurant else "platform"
        return [first, "platform" if first == "restaurant" else "restaurant"]
    if model == "B":
        return ["restaurant"]
    return ["platform"]


def plan_credit_notes(
    facts: OrderFacts, model: str, event: CreditEvent, issued: dict[str, IssuedDoc]
) -> list[Doc]:
    """Credit notes for one refund or lost dispute: per bearer share, on the customer document
    of the party that bears it (A: the platform's or the restaurant's; B: the restaurant's, the
    customer's only one; C: the platform's, the merchant of record), spilling to the order's
    other customer document when the first cannot credit that much; in model C the
    restaurant's share also credits its self-billing invoice. Raises InvoicingRuleError
    (`credit_exceeds_documents`) when the order's documents cannot credit the whole amount."""
    oid, R = facts.order_id, facts.restaurant
    room = {role: doc.remaining for role, doc in issued.items()}
    per_doc: dict[str, list[Line]] = {}
    self_billing: list[Line] = []
    for account in sorted(event.shares):
        amount = event.shares[account]
        if amount <= 0:
            continue
        left = amount
        for role in _customer_targets(model, account, R):
            if left == 0:
                break
            if role not in issued or room[role] <= 0:
                continue
            take = min(left, room[role])
            room[role] -= take
            left -= take
            who = _bearer_words(account, R)
            if account.startswith("riders:"):
                tags: list[tuple[int, str]] = [(take, "")]
            elif model == "C" and account == R:
                covered = issued["self_billing"].remaining if "self_billing" in issued else 0
                covered = max(0, min(take, covered - sum(-x.gross for x in self_billing)))
                if covered:
                    self_billing.append(
                        Line(
                            "refund",
                            f"Credit, order {oid} ({event.key})",
                            -covered,
                            issued["self_billing"].main_bps,
                            R,
                            FEES,
                            event.tx_id,
                            oid,
                        )
                    )
                tags = [(covered, FEES), (take - covered, R)]
            else:
                tags = [(take, account)]
            for part, tag in tags:
                if part:
                    per_doc.setdefault(role, []).append(
                        Line(
                            "refund",
                            f"Refund ({who}), order {oid}",
                            -part,
                            issued[role].main_bps,
                            tag,
                            "",
                            event.tx_id,
                            oid,
                        )
                    )
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


# --- periodic documents ---------------------------------------------------------------------


def month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def plan_commission_invoice(
    restaurant: str, period: str, orders: list[OrderFacts], rates_services: int
) -> Doc | None:
    """Model B: the platform's monthly invoice to a restaurant for its commission and the
    delivery service, one pair of lines per order split in `period`."""
    lines: list[Line] = []
    for facts in sorted(orders, key=lambda f: f.order_id):
        oid = facts.order_id
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
