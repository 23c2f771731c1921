"""`manage.py ledger`: operate the ledger.

    manage.py ledger verify [--unsealed-after SECONDS] [--no-balances]
    manage.py ledger seal
    manage.py ledger balance-sheet [--at ISO-8601] [--asset ASSET]
    manage.py ledger balances [PATTERN] [--asset ASSET] [--at ISO-8601]
    manage.py ledger checkpoints run [--at ISO-8601]
    manage.py ledger checkpoints rebuild

`checkpoints run` writes a balance checkpoint run now (what the beat task does); `checkpoints
rebuild` recomputes every run from the postings at the same instants (checkpoints are derived
data: dropping or rebuilding them changes no balance, no posting and no seal).

`verify` seals nothing: it recomputes the hash chain, names the first broken link, reports
transactions unsealed for too long, and checks that balances equal their postings and sum to
zero per asset. It exits non-zero when anything is wrong.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from rich.console import Console
from rich.table import Table

from ledger.domain import format_amount
from ledger.errors import LedgerError
from ledger.selectors import SECTIONS, balance_sheet_get, balances_get
from ledger.services import chain_verify, transactions_seal
from ledger.services.checkpoints import checkpoints_rebuild, checkpoints_run

SECTION_TITLES = {
    "asset": "Assets",
    "liability": "Liabilities",
    "equity": "Equity",
    "revenue": "Revenue",
    "expense": "Expenses",
    "unclassified": "Unclassified (no chart pattern matches)",
}


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--at {value!r}: expected ISO-8601 with a time zone", returncode=2)
    return parsed


class Command(BaseCommand):
    help = "Ledger operations: verify, seal, balance-sheet, balances."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        verify = sub.add_parser("verify", help="recompute the hash chain and the invariants")
        verify.add_argument(
            "--unsealed-after",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="report transactions still unsealed after this long (default 300)",
        )
        verify.add_argument(
            "--no-balances", action="store_true", help="skip the balance invariants"
        )
        sub.add_parser("seal", help="seal every committed transaction not sealed yet")
        sheet = sub.add_parser("balance-sheet", help="balance sheet and trial balance")
        sheet.add_argument("--at", help="ISO-8601 instant (default: now)")
        sheet.add_argument("--asset", help="only this asset")
        balances = sub.add_parser("balances", help="balances by address pattern")
        balances.add_argument("pattern", nargs="?", default="**")
        balances.add_argument("--asset")
        balances.add_argument("--at")
        checkpoints = sub.add_parser("checkpoints", help="balance checkpoints (derived data)")
        checkpoints.add_argument("action", choices=["run", "rebuild"])
        checkpoints.add_argument("--at", help="ISO-8601 instant of the run (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.console = Console(file=self.stdout, width=120, soft_wrap=True)  # type: ignore[arg-type]
        try:
            {
                "verify": self._verify,
                "seal": self._seal,
                "balance-sheet": self._balance_sheet,
                "balances": self._balances,
                "checkpoints": self._checkpoints,
            }[options["subcommand"]](options)
        except LedgerError as exc:
            raise CommandError(f"{exc.code}: {exc.message}", returncode=2) from exc

    def _checkpoints(self, options: dict[str, Any]) -> None:
        if options["action"] == "rebuild":
            try:
                runs = checkpoints_rebuild()
            except TimeoutError as exc:
                raise CommandError(f"not rebuilt: {exc}", returncode=1) from exc
            self.stdout.write(f"rebuilt {runs} checkpoint run(s)")
            return
        result = checkpoints_run(at=_parse_at(options.get("at")))
        self.stdout.write(
            f"checkpoint run {result.run_id} at {result.at.isoformat()}: {result.rows} row(s), "
            f"{result.folded} posting(s) folded, {result.pruned} run(s) pruned"
        )

    def _seal(self, options: dict[str, Any]) -> None:
        sealed = transactions_seal()
        self.stdout.write(f"sealed {sealed} transaction(s)")

    def _verify(self, options: dict[str, Any]) -> None:
        report = chain_verify(
            unsealed_after=timedelta(seconds=options["unsealed_after"]),
            balances=not options["no_balances"],
        )
        self.stdout.write(f"chain: {report.checked} seal(s) verified, head {report.head_hash}")
        problems = []
        if report.broken is not None:
            b = report.broken
            problems.append(
                f"BROKEN LINK at seal {b.seq} (transaction {b.transaction_id}): {b.reason}"
            )
        if report.unsealed_stale:
            problems.append(
                f"{len(report.unsealed_stale)} transaction(s) unsealed for more than "
                f"{options['unsealed_after']:.0f}s, first: {report.unsealed_stale[:10]}"
            )
        if report.unqueued:
            problems.append(
                f"transaction(s) neither sealed nor queued for sealing: {report.unqueued[:10]}"
            )
        for address, asset, rows, postings in report.balance_mismatches[:20]:
            problems.append(
                f"balance of {address} {asset} is {rows} but its postings sum to {postings}"
            )
        for asset, total in report.asset_sums.items():
            problems.append(f"balances of {asset} sum to {total}, not 0")
        self.stdout.write(f"unsealed (queued): {report.unsealed_total}")
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError("ledger verification FAILED", returncode=1)
        self.stdout.write("OK")

    def _balance_sheet(self, options: dict[str, Any]) -> None:
        at = _parse_at(options.get("at"))
        sheet = balance_sheet_get(at=at)
        when = at.isoformat() if at else "now"
        if not sheet.assets:
            self.stdout.write(f"Balance sheet at {when}: the ledger is empty.")
            return
        for asset_sheet in sheet.assets:
            if options.get("asset") and asset_sheet.asset != options["asset"]:
                continue
            fmt = asset_sheet.fmt
            table = Table(
                title=f"Balance sheet {asset_sheet.asset} at {when}",
                show_footer=False,
                title_justify="left",
            )
            table.add_column("Section")
            table.add_column("Account")
            table.add_column("Amount", justify="right")
            table.add_column("Debit", justify="right")
            table.add_column("Credit", justify="right")
            for section in SECTIONS:
                lines = [line for line in asset_sheet.lines if line.type == section]
                if not lines and section == "unclassified":
                    continue
                for i, line in enumerate(lines):
                    table.add_row(
                        SECTION_TITLES[section] if i == 0 else "",
                        line.address,
                        fmt(line.amount),
                        fmt(line.debit) if line.debit else "",
                        fmt(line.credit) if line.credit else "",
                    )
                table.add_row(
                    "",
                    f"[bold]Total {SECTION_TITLES[section].split(' ')[0].lower()}[/bold]",
                    f"[bold]{fmt(asset_sheet.totals.get(section, 0))}[/bold]",
                    "",
                    "",
                    end_section=True,
                )
            table.add_row(
                "Trial balance",
                "total debits = total credits",
                "",
                fmt(asset_sheet.total_debits),
                fmt(asset_sheet.total_credits),
                end_section=True,
            )
            check = "OK" if asset_sheet.balanced else "UNBALANCED"
            table.add_row(
                "Check",
                "assets = liabilities + equity + (revenue - expense)",
                f"{fmt(asset_sheet.totals.get('asset', 0))} = "
                f"{fmt(asset_sheet.liabilities_and_equity)} {check}",
                "",
                "",
            )
            self.console.print(table)
        if sheet.unclassified:
            self.stderr.write(
                f"warning: {len(sheet.unclassified)} account(s) match no chart pattern: "
                f"{', '.join(sheet.unclassified[:10])}"
            )
        if not sheet.balanced:
            raise CommandError("the balance sheet does not balance", returncode=1)

    def _balances(self, options: dict[str, Any]) -> None:
        at = _parse_at(options.get("at"))
        result = balances_get(pattern=options["pattern"], asset=options.get("asset"), at=at)
        table = Table(
            title=f"Balances {result.pattern} at {at.isoformat() if at else 'now'}",
            title_justify="left",
        )
        table.add_column("Account")
        table.add_column("Asset")
        table.add_column("Balance", justify="right")
        for address, assets in result.accounts.items():
            for asset, balance in sorted(assets.items()):
                table.add_row(address, asset, format_amount(asset, balance))
        for asset, total in result.totals.items():
            table.add_row(
                "[bold]total[/bold]", asset, f"[bold]{format_amount(asset, total)}[/bold]"
            )
        self.console.print(table)
