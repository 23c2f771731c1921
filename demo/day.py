"""A realistic day of the marketplace, played through the real HTTP paths.

`demo_day(...)` expects the app to be served (`app_url`) and the Stripe emulator to deliver
its signed webhooks to it (with duplicates and shuffled order switched on); it returns a
`DemoContext` that later stages (payouts, reconciliation) take over:

1. staff onboard restaurants and riders (`POST /api/v1/restaurants/`, `/riders/`: Stripe
   Connect accounts at the emulator), the owners put capital in the bank;
2. a coupon campaign is created and funded with $15,000 (`POST /api/v1/campaigns/...`);
3. a few hundred orders are placed (`POST /api/v1/orders/`), some with the coupon; each
   customer confirms the PaymentIntent at the emulator (a few cards are declined, one is
   disputed at once); payments reach the app as signed webhooks;
4. riders are assigned and orders delivered (`.../assign_rider/`, `.../deliver/`): the
   splits;
5. staff refund: one at the platform's loss, one borne by a restaurant, one shared, one on a
   card whose refunds fail (undone when Stripe says so); a dispute is won;
6. the platform tops up its Stripe balance from the bank (`POST /api/v1/topups/`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from demo.inbox import inbox_drain
from stripe_gateway.client import StripeGateway
from stripe_gateway.errors import CardDeclined

T = TypeVar("T")

RESTAURANTS = [
    ("Pho 99", "15%"),
    ("Curry Leaf", "15%"),
    ("Bella Napoli", "18%"),
    ("Tokyo Ramen", "12.5%"),
    ("Green Bowl", "15%"),
    ("Taco Loco", "20%"),
    ("Le Petit Bistro", "15%"),
    ("Burger Barn", "13%"),
]
RIDERS = ["Ana", "Bo", "Chen", "Dara", "Eli", "Fatou", "Gus", "Hana", "Ivo", "Jun", "Kemi", "Lea"]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any):
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class DemoContext:
    """What the day produced; the payouts and reconciliation stages extend it."""

    app_url: str
    emulator: Any  # stripe_emulator.EmulatorServer
    token: str
    seed: int
    rng: random.Random
    console: Console
    restaurants: list[dict[str, Any]] = field(default_factory=list)
    riders: list[dict[str, Any]] = field(default_factory=list)
    campaign: dict[str, Any] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)
    paid: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)
    cards: dict[int, str] = field(default_factory=dict)  # order id -> the card used
    topups: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    approver_token: str = ""  # a second person (Finance): the four-eyes approvals
    _local: threading.local = field(default_factory=threading.local, repr=False)

    # --- the API, as staff ---
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {self.token}"
            self._local.session = session
        return session

    def api(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        ok: Iterable[int] = (),
        token: str | None = None,
    ) -> Any:
        session = self.session()
        if token is not None:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
        response = session.request(
            method, f"{self.app_url}/api/v1/{path.lstrip('/')}", json=json, timeout=60
        )
        body = response.json() if response.content else None
        if response.status_code >= 400 and response.status_code not in set(ok):
            raise ApiError(method, path, response.status_code, body)
        return body

    def gateway(self) -> StripeGateway:
        """The customer's side (their app confirming a PaymentIntent at Stripe)."""
        gateway = getattr(self._local, "gateway", None)
        if gateway is None:
            gateway = StripeGateway(
                api_key="sk_test_customer_app", api_base=self.emulator.url, max_network_retries=0
            )
            self._local.gateway = gateway
        return gateway

    def settle(self, timeout: float = 120.0) -> None:
        result = inbox_drain(emulator=self.emulator, timeout=timeout)
        if not result.settled:
            self.errors.append(f"{result.left} webhook event(s) still in flight")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _run_all(
    ctx: DemoContext, label: str, items: list[T], fn: Callable[[T], Any], workers: int = 4
) -> list[Any]:
    """Run fn over items with a small pool (the app serves requests in threads), with a bar."""
    results: list[Any] = [None] * len(items)
    with _progress(ctx.console) as progress, ThreadPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task(label, total=len(items))

        def one(index: int) -> None:
            try:
                results[index] = fn(items[index])
            except Exception as exc:  # keep the day going; reported at the end
                ctx.errors.append(f"{label}: {exc}")
            progress.advance(task)

        list(pool.map(one, range(len(items))))
    return results


def _timed(ctx: DemoContext, name: str) -> Callable[[], None]:
    started = time.perf_counter()

    def done() -> None:
        ctx.timings[name] = round(time.perf_counter() - started, 2)

    return done


# --- the day -----------------------------------------------------------------------------------


def demo_day(
    *,
    app_url: str,
    emulator: Any,
    token: str,
    orders: int,
    seed: int,
    console: Console,
    approver_token: str = "",
) -> DemoContext:
    ctx = DemoContext(
        app_url=app_url,
        emulator=emulator,
        token=token,
        approver_token=approver_token,
        seed=seed,
        rng=random.Random(seed),
        console=console,
    )
    onboard(ctx)
    campaign_launch(ctx)
    orders_place_and_pay(ctx, count=orders)
    deliveries(ctx)
    refunds_and_disputes(ctx)
    topup(ctx)
    return ctx


def onboard(ctx: DemoContext) -> None:
    done = _timed(ctx, "onboarding")
    from marketplace.services.treasury import capital_add

    # The owners' capital in the bank: what top-ups draw on.
    capital_add(amount=10_000_000, key=f"demo-{ctx.seed}")
    ctx.restaurants = _run_all(
        ctx,
        "onboarding restaurants",
        RESTAURANTS,
        lambda r: ctx.api(
            "POST",
            "restaurants/",
            {"name": r[0], "commission": r[1], "email": f"{r[0].split()[0].lower()}@example.com"},
        ),
    )
    ctx.riders = _run_all(
        ctx,
        "onboarding riders",
        RIDERS,
        lambda name: ctx.api("POST", "riders/", {"name": name}),
    )
    ctx.restaurants = [r for r in ctx.restaurants if r]
    ctx.riders = [r for r in ctx.riders if r]
    done()


def campaign_launch(ctx: DemoContext) -> None:
    # A second run on the same database gets a campaign of its own.
    taken = {c["code"] for c in ctx.api("GET", "campaigns/")}
    code = next(c for c in ("LUNCH20", *(f"LUNCH20-{n}" for n in range(2, 1000))) if c not in taken)
    campaign = ctx.api(
        "POST",
        "campaigns/",
        {
            "code": code,
            "name": "20% off lunch, up to $6",
            "budget": 1_500_000,
            "per_order_cap": 600,
            "percent_off": "20%",
        },
    )
    ctx.campaign = ctx.api("POST", f"campaigns/{campaign['id']}/fund/", {"amount": 1_500_000})


def _card(ctx: DemoContext, index: int, rng: random.Random) -> str:
    if index == 7:
        return "pm_card_createDispute"  # disputed as soon as it is paid
    if index == 11:
        return "pm_card_refundFail"  # its refunds fail after being accepted
    if rng.random() < 0.03:
        return "pm_card_chargeDeclined"
    return rng.choice(["pm_card_visa", "pm_card_mastercard", "pm_card_amex"])


def orders_place_and_pay(ctx: DemoContext, *, count: int) -> None:
    done = _timed(ctx, "orders")
    plans = []
    for index in range(count):
        rng = random.Random(ctx.seed * 1_000_003 + index)
        restaurant = rng.choice(ctx.restaurants)
        plans.append(
            {
                "index": index,
                "restaurant": restaurant["id"],
                "subtotal": rng.randrange(1200, 6000, 5),
                "delivery_fee": rng.choice([199, 299, 349, 399, 499]),
                "coupon": ctx.campaign["code"] if rng.random() < 0.3 else "",
                "card": _card(ctx, index, rng),
                "customer_email": f"customer{rng.randrange(1, count + 1)}@example.com",
            }
        )

    def place_and_pay(plan: dict[str, Any]) -> tuple[int, str, bool]:
        created = ctx.api(
            "POST",
            "orders/",
            {
                k: plan[k]
                for k in ("restaurant", "subtotal", "delivery_fee", "coupon", "customer_email")
            },
        )
        order_id = created["order"]["id"]
        intent_id = created["payment_intent"]["id"]
        try:
            ctx.gateway().payment_intent_confirm(
                payment_intent_id=intent_id,
                payment_method=plan["card"],
                idempotency_key=f"confirm:{intent_id}",
            )
        except CardDeclined:
            return order_id, plan["card"], False
        return order_id, plan["card"], True

    results = _run_all(ctx, "orders placed and paid", plans, place_and_pay)
    for result in results:
        if result is None:
            continue
        order_id, card, paid = result
        ctx.orders.append(order_id)
        ctx.cards[order_id] = card
        (ctx.paid if paid else ctx.declined).append(order_id)
    with ctx.console.status("waiting for the payment webhooks"):
        ctx.settle()
    done()


def _special(ctx: DemoContext, card: str) -> int | None:
    return next((o for o in ctx.paid if ctx.cards.get(o) == card), None)


def deliveries(ctx: DemoContext) -> None:
    done = _timed(ctx, "deliveries")
    # The last few paid orders are still on their way: their money stays in orders:<id>.
    ordinary = [
        o
        for o in ctx.paid
        if ctx.cards.get(o) in ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")
    ]
    waiting = set(ordinary[-3:]) if len(ordinary) > 10 else set()
    to_deliver = [o for o in ctx.paid if o not in waiting]

    def deliver(order_id: int) -> int:
        rider = ctx.riders[order_id % len(ctx.riders)]
        ctx.api("POST", f"orders/{order_id}/assign_rider/", {"rider": rider["id"]})
        ctx.api("POST", f"orders/{order_id}/deliver/", {})
        return order_id

    ctx.delivered = [o for o in _run_all(ctx, "deliveries and splits", to_deliver, deliver) if o]
    done()


def refunds_and_disputes(ctx: DemoContext) -> None:
    done = _timed(ctx, "refunds")
    ordinary = [
        o
        for o in ctx.delivered
        if ctx.cards.get(o) in ("pm_card_visa", "pm_card_mastercard", "pm_card_amex")
    ]
    undelivered = [o for o in ctx.paid if o not in ctx.delivered]
    plans: list[tuple[int, dict[str, Any]]] = []
    if len(ordinary) >= 3:
        plans += [
            (ordinary[0], {"bearer": "platform", "reason": "cold food: a refund at loss"}),
            (ordinary[1], {"bearer": "restaurant", "reason": "wrong dish"}),
            (
                ordinary[2],
                {
                    "bearer": "shared",
                    "restaurant_share": "50%",
                    "rider_share": "25%",
                    "reason": "late and cold",
                },
            ),
        ]
    if undelivered:
        plans.append((undelivered[0], {"bearer": "platform", "reason": "item missing"}))
    refund_fail = _special(ctx, "pm_card_refundFail")
    if refund_fail is not None:
        plans.append((refund_fail, {"bearer": "platform", "reason": "the card refund fails"}))
    for order_id, plan in plans:
        order = ctx.api("GET", f"orders/{order_id}/")
        amount = order["total"] if plan["bearer"] == "restaurant" else order["total"] // 3
        body = {"amount": amount, "idempotency_key": f"demo-{order_id}", **plan}
        ctx.refunds.append(ctx.api("POST", f"orders/{order_id}/refunds/", body))
    for index, refund in enumerate(ctx.refunds):
        if refund["status"] == "awaiting_approval":
            # Four eyes: the requester may not approve; a second person in Finance does.
            refused = ctx.api("POST", f"refunds/{refund['id']}/approve/", {}, ok=(403,))
            if not refused or refused.get("code") != "self_approval":
                ctx.errors.append(f"a requester approved their own refund: {refused}")
            ctx.refunds[index] = ctx.api(
                "POST",
                f"refunds/{refund['id']}/approve/",
                {"note": "checked the order"},
                token=ctx.approver_token,
            )
    if plans:
        # Staff double-click: the same idempotency key answers with the same refund.
        order_id, plan = plans[0]
        body = {"amount": ctx.refunds[0]["amount"], "idempotency_key": f"demo-{order_id}", **plan}
        if ctx.api("POST", f"orders/{order_id}/refunds/", body)["id"] != ctx.refunds[0]["id"]:
            ctx.errors.append("a double-submitted refund created a second refund")
        # More than what is left to refund is refused.
        refused = ctx.api("POST", f"orders/{order_id}/refunds/", {"amount": 99_999_999}, ok=(400,))
        if not refused or refused.get("code") != "refund_exceeds_refundable":
            ctx.errors.append(f"an oversized refund was not refused: {refused}")
    ctx.settle()
    # The card of one order was disputed as soon as it paid: the platform wins the dispute.
    from marketplace.models import Dispute

    ctx.disputes = list(
        Dispute.objects.filter(order_id__in=ctx.orders)
        .order_by("id")
        .values_list("stripe_dispute_id", flat=True)
    )
    if ctx.disputes:
        status, _ = ctx.emulator.request(
            "POST", f"/v1/test_helpers/disputes/{ctx.disputes[0]}/close", {"outcome": "won"}
        )
        if status != 200:
            ctx.errors.append(f"closing dispute {ctx.disputes[0]} answered {status}")
    ctx.settle()
    done()


def topup(ctx: DemoContext) -> None:
    # Cover the losses of the day, and some margin, from the bank.
    ctx.topups.append(
        ctx.api("POST", "topups/", {"amount": 250_000, "description": "cover losses"})
    )
    ctx.settle()
