"""The demo's staff: one user per role with a known password, so that after `make demo` the
day can be browsed at /staff/ (`make serve`). Development only: refused in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from staff.roles import FINANCE, FINANCE_ADMIN, MARKETING, SUPPORT

DEMO_PASSWORD = "demo-password"  # noqa: S105  (public on purpose: development databases only)
DEMO_USERS = (
    ("demo-support", SUPPORT),
    ("demo-marketing", MARKETING),
    ("demo-finance", FINANCE),
    ("demo-finance-admin", FINANCE_ADMIN),
)


def demo_staff_users() -> list[tuple[str, str]]:
    """Create (or reset) the demo users; returns (username, role) pairs."""
    if getattr(settings, "PRODUCTION", False):
        raise RuntimeError("demo users are for development databases only")
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    for username, role in DEMO_USERS:
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.is_staff = True
        user.is_active = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        user.groups.add(*Group.objects.filter(name=role))
    return list(DEMO_USERS)


def demo_staff(ctx: Any, stdout: Any) -> None:
    """The demo's stage: the staff who will browse the day."""
    demo_staff_users()


def demo_browse_howto(console: Any) -> None:
    """The demo's last words: how to browse the day as staff."""
    from rich.panel import Panel

    lines = [
        "make serve    # then open http://127.0.0.1:8000/staff/",
        "",
        *[f"  {username:<20} {role:<14} password {DEMO_PASSWORD}" for username, role in DEMO_USERS],
        "",
        "Search an order id, an email, pi_/ch_/re_ or a ledger reference; refunds above "
        "USD 50.00 wait for a second person's approval (development users only).",
    ]
    console.print(Panel.fit("\n".join(lines), title="browse the day as staff"))
