"""Where the interpreter reads balances and account metadata from.

The ledger implements :class:`Store` against locked database rows; :class:`StaticStore` serves
in-memory data to tests, the spec runner and ``numscript run --inputs``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

#: Suffix of a wildcard asset in a balance query: ``("EUR/*", "")`` asks for every scale of
#: ``EUR`` (``EUR``, ``EUR/1``, ``EUR/2``, ...) in the uncolored bucket. Only
#: ``with scaling through`` sources (flag ``experimental-asset-scaling``) send it.
ALL_SCALES = "/*"


class Unspeculable(Exception):
    """A speculative run (a store with ``speculative = True``) needed what speculation cannot
    give: the exact value of a balance (``send [A *]``, ``balance()``, ``overdraft()``,
    ``save``, a scaling source) or what the store declined to answer. The caller runs the
    script the ordinary way instead. Not a :class:`NumscriptError`: the script is not wrong."""


class Store(Protocol):
    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        """query: account -> collection of (asset, color); answer: account ->
        {(asset, color): balance}. Missing rows mean 0.

        The interpreter calls this once with every statically known source balance of the
        whole program (after the variables are evaluated), then again only for what it could
        not know in advance (``balance()`` calls, computed accounts). ``@world`` is never
        queried. An asset ending in :data:`ALL_SCALES` (``"EUR/*"``) asks for all the
        scales of that base asset; answer with the concrete assets found."""
        ...

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        """account -> {key: value} for each requested account (missing accounts may be left
        out of the answer)."""
        ...


# A store may also be *speculative* (attribute ``speculative = True``, and a method
# ``require(key, minimum)``): it answers every balance as 0 without reading it, and the
# interpreter then never decides anything on a balance's value. A bounded source that must give
# ``amount`` takes it in full and reports, through ``require((account, asset, color),
# minimum)``, the smallest stored balance for which the ordinary run takes it in full too
# (``amount - overdraft bound - what the script moved in and out of it before``); every other
# use of a balance raises :class:`Unspeculable`. So if every stored balance is at least its
# reported minimum, the ordinary run, with the real balances, produces exactly the speculative
# run's postings; the caller checks that under the rows' locks when it writes.
#
# A speculative store may also take *drains* (a method ``drain(key, held, parts)``): a last
# statement ``send [A *]`` from one account without overdraft or color, to an account or an
# allotment of accounts, is then not run but handed over: ``key`` (account, asset, ""),
# ``held`` what the run moved in (+) and out (-) of it before, ``parts`` [(portion, destination
# account)] in the order written. The ordinary run's postings for it are, with ``total`` =
# stored balance + held when positive: ``floor(total x portion)`` to each destination, the
# leftover units one each to the first parts, one posting per non-empty part, in order. The
# caller computes them where the balance is locked (the ledger: in the write itself).


def base_asset(asset: str) -> str:
    return asset.partition("/")[0]


class StaticStore:
    """An in-memory :class:`Store`.

    ``balances``: account -> {(asset, color): amount} (the natural form) or account ->
    {asset: amount} (uncolored shorthand). ``metadata``: account -> {key: value}.
    """

    __slots__ = ("_balances", "_metadata")

    def __init__(
        self,
        balances: Mapping[str, Mapping[tuple[str, str] | str, int]] | None = None,
        metadata: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        normalized: dict[str, dict[tuple[str, str], int]] = {}
        for account, rows in (balances or {}).items():
            target = normalized.setdefault(account, {})
            for key, amount in rows.items():
                target[(key, "") if isinstance(key, str) else key] = amount
        self._balances = normalized
        self._metadata = {account: dict(keys) for account, keys in (metadata or {}).items()}

    @classmethod
    def from_rows(
        cls,
        rows: Collection[tuple[str, str, str, int]],
        metadata: Mapping[str, Mapping[str, str]] | None = None,
    ) -> StaticStore:
        """Build from (account, asset, color, amount) rows."""
        balances: dict[str, dict[tuple[str, str] | str, int]] = {}
        for account, asset, color, amount in rows:
            balances.setdefault(account, {})[(asset, color)] = amount
        return cls(balances, metadata)

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        answer: dict[str, dict[tuple[str, str], int]] = {}
        for account, keys in query.items():
            rows = self._balances.get(account, {})
            out: dict[tuple[str, str], int] = {}
            for asset, color in keys:
                if asset.endswith(ALL_SCALES):
                    base = asset[: -len(ALL_SCALES)]
                    for (row_asset, row_color), amount in rows.items():
                        if row_color == color and base_asset(row_asset) == base:
                            out[(row_asset, row_color)] = amount
                else:
                    out[(asset, color)] = rows.get((asset, color), 0)
            answer[account] = out
        return answer

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        return {a: dict(self._metadata[a]) for a in accounts if a in self._metadata}
