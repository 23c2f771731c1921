"""`manage.py payouts`: operate payouts.

    manage.py payouts run [--min-amount N] [--kind restaurant|rider] [--sync] [--no-drive]
    manage.py payouts status [--json]
    manage.py payouts show PAYOUT_ID
    manage.py payouts drive PAYOUT_ID [...]
    manage.py payouts sweep
    manage.py payouts reverse PAYOUT_ID --reason TEXT

`run` is one scheduling pass (a progress bar per chunk of payees); its payouts are handed to
the Celery workers, or driven here with `--sync` (no worker needed). `status` counts payouts
per state and lists the stuck and the escalated. `reverse` pulls back the transfer of a failed
payout whose connected account could not use the money (its bank payout failed) and returns it
to the payee. Errors end with one line and a non-zero exit.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.errors import ApplicationError
from config.permissions import command_actor
from ledger.domain import format_amount
from payouts import selectors, services
from payouts.models import PayeeKind
from payouts.transitions import State


def _money(amount: int, asset: str) -> str:
    """5900, "USD/2" -> "59.00 USD"."""
    return f"{format_amount(asset, amount)} {asset.split('/')[0]}"


class Command(BaseCommand):
    help = "Payouts: run a scheduling pass, status, show, drive, sweep."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        run = sub.add_parser("run", help="one scheduling pass")
        run.add_argument("--min-amount", type=int, default=None, help="override the minimum")
        run.add_argument("--kind", choices=PayeeKind.values, action="append", dest="kinds")
        run.add_argument("--sync", action="store_true", help="drive the payouts here")
        run.add_argument(
            "--no-drive", action="store_true", help="only create (the sweeper drives them)"
        )
        status = sub.add_parser("status", help="payouts per state, stuck, escalated")
        status.add_argument("--json", action="store_true")
        show = sub.add_parser("show", help="one payout and its audit trail")
        show.add_argument("payout_id")
        drive = sub.add_parser("drive", help="drive payouts now, in this process")
        drive.add_argument("payout_ids", nargs="+")
        sub.add_parser("sweep", help="re-drive stuck payouts (what beat does every minute)")
        reverse = sub.add_parser(
            "reverse", help="reverse a failed payout's transfer; the money goes back to the payee"
        )
        reverse.add_argument("payout_id")
        reverse.add_argument("--reason", required=True, help="why (kept on the audit trail)")
        for sub_parser in (run, reverse):
            sub_parser.add_argument(
                "--as",
                dest="as_user",
                help="act as this user (must hold payouts.manage_payouts)",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        self.console = Console(file=self.stdout, width=120, soft_wrap=False)  # type: ignore[arg-type]
        try:
            getattr(self, f"_{options['subcommand']}")(**options)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

    # --- run ------------------------------------------------------------------------------
    def _run(
        self,
        *,
        min_amount: int | None,
        kinds: list[str] | None,
        sync: bool,
        no_drive: bool,
        as_user: str | None = None,
        **_: Any,
    ) -> None:
        if min_amount is not None and min_amount < 1:
            raise CommandError("--min-amount must be at least 1")
        actor = _actor(as_user, "run")
        candidates = selectors.candidates_list(kinds=kinds, min_amount=min_amount)
        created: list[Any] = []
        with Progress(
            TextColumn("[bold]payouts[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            task = progress.add_task("scheduling", total=len(candidates))

            def advance(done: int, made: int) -> None:
                progress.update(task, advance=done)

            result = services.payouts_schedule(
                kinds=kinds,
                payee_ids=[c.payee.key for c in candidates],
                min_amount=min_amount,
                actor=actor,
                drive=not (sync or no_drive),
                progress=advance,
            )
            created = result.created
            if sync and created:
                driving = progress.add_task("driving", total=len(created))
                for start in range(0, len(created), 50):
                    batch = created[start : start + 50]
                    services.payouts_drive(ids=batch, actor=actor)
                    progress.update(driving, advance=len(batch))
        amounts = ", ".join(_money(v, k) for k, v in sorted(result.amounts.items())) or "nothing"
        self.stdout.write(
            f"{len(created)} payout(s) created ({amounts}) from {result.candidates} candidate(s); "
            f"skipped: {result.skipped_in_flight} in flight, {result.skipped_held} held, "
            f"{result.skipped_below_minimum} below the minimum; {result.seconds:.2f} s"
        )
        if sync and created:
            states = selectors.payouts_list().filter(pk__in=created).values_list("state", flat=True)
            counts: dict[str, int] = {}
            for state in states:
                counts[state] = counts.get(state, 0) + 1
            self.stdout.write("driven: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

    # --- status ---------------------------------------------------------------------------
    def _status(self, *, json: bool, **_: Any) -> None:
        status = selectors.status_get()
        if json:
            self.stdout.write(
                _dumps(
                    {
                        "states": {k: v["count"] for k, v in status.by_state.items()},
                        "amounts": status.amounts,
                        "stuck": [str(p.pk) for p in status.stuck],
                        "needs_attention": status.needs_attention,
                        "oldest_in_flight": status.oldest_in_flight.isoformat()
                        if status.oldest_in_flight
                        else None,
                    }
                )
            )
            return
        table = Table(title="Payouts by state")
        table.add_column("state")
        table.add_column("payouts", justify="right")
        table.add_column("amount", justify="right")
        for state in State.values:
            amounts = status.amounts[state]
            table.add_row(
                state,
                str(status.by_state[state]["count"]),
                ", ".join(_money(v, k) for k, v in sorted(amounts.items())) or "-",
            )
        self.console.print(table)
        self.stdout.write(
            f"needs attention: {status.needs_attention}; oldest in flight since: "
            f"{status.oldest_in_flight.isoformat() if status.oldest_in_flight else '-'}"
        )
        if status.stuck:
            stuck = Table(title="Stuck (the sweeper will re-drive these)")
            for column in ("payout", "state", "since", "attempts", "last error"):
                stuck.add_column(column)
            for p in status.stuck:
                stuck.add_row(
                    str(p.pk),
                    p.state,
                    p.state_changed_at.isoformat(timespec="seconds"),
                    str(p.attempts),
                    p.last_error[:60],
                )
            self.console.print(stuck)

    # --- show, drive, sweep ---------------------------------------------------------------
    def _show(self, *, payout_id: str, **_: Any) -> None:
        payout = selectors.payout_get(payout_id=payout_id)
        self.stdout.write(
            f"payout {payout.pk}: {payout.state}, {_money(payout.amount, payout.asset)} "
            f"{payout.account} -> {payout.destination}, transfer {payout.transfer_id or '-'}"
        )
        table = Table(title="Audit trail")
        for column in ("at", "from", "to", "why", "by"):
            table.add_column(column)
        for event in selectors.payout_events(payout_id=payout.pk):
            table.add_row(
                event.created_at.isoformat(timespec="seconds"),
                event.from_state or "-",
                event.to_state,
                event.why,
                event.actor,
            )
        self.console.print(table)

    def _drive(self, *, payout_ids: list[str], **_: Any) -> None:
        for payout_id in payout_ids:
            selectors.payout_get(payout_id=payout_id)  # a clear error for an unknown id
        result = services.payouts_drive(ids=payout_ids, actor="command:payouts drive")
        self.stdout.write(_dumps(result.as_dict()))

    def _sweep(self, **_: Any) -> None:
        self.stdout.write(f"{services.payouts_sweep()} payout(s) re-driven")

    def _reverse(self, *, payout_id: str, reason: str, as_user: str | None, **_: Any) -> None:
        if not reason.strip():
            raise CommandError("--reason must not be empty")
        actor = _actor(as_user, "payouts reverse")  # command:payouts reverse@<os user>
        payout = services.payout_reverse(payout_id=payout_id, reason=reason.strip(), actor=actor)
        if payout.state == State.RETURNED:
            self.stdout.write(
                f"payout {payout.pk}: transfer {payout.transfer_id} reversed, "
                f"{_money(payout.amount_reversed, payout.asset)} back to {payout.payee_address}"
            )
        else:
            self.stdout.write(
                f"payout {payout.pk}: transfer {payout.transfer_id} reversed at Stripe; the "
                "money returns to the payee with the transfer.reversed webhook"
            )


def _actor(as_user: str | None, command: str) -> str:
    """The payouts audit label: `staff:<user>` for `--as` (permission checked), else the
    command and the operator's shell account."""
    actor = command_actor(username=as_user, permission="payouts.manage_payouts", command=command)
    return actor if isinstance(actor, str) else f"staff:{actor.get_username()}"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
