"""Hypothesis stateful test: random posts, bulk posts, reverts, replays and metadata changes,
checked against an independent in-memory model; after every step the ledger's invariants hold:
per asset the balances sum to zero, no account without an overdraft allowance is negative,
every balance equals input - output and the sum of its postings, and equals the model's."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.domain import WORLD, PostingInput
from ledger.errors import AlreadyReverted, InsufficientFunds, ReferenceConflict
from ledger.selectors import (
    account_metadata_get,
    balance_get,
    balances_get,
    ledger_invariants_check,
    volumes_get,
)
from ledger.services import (
    account_metadata_delete,
    account_metadata_set,
    transaction_post,
    transaction_revert,
    transactions_post_bulk,
)

ACCOUNTS = ["world", "a", "b", "c:1", "c:2"]
ASSETS = ["USD/2", "JPY"]

postings_st = st.lists(
    st.builds(
        PostingInput,
        source=st.sampled_from(ACCOUNTS),
        destination=st.sampled_from(ACCOUNTS),
        asset=st.sampled_from(ASSETS),
        amount=st.integers(min_value=1, max_value=100),
    ),
    min_size=1,
    max_size=4,
)
overdraft_st = st.dictionaries(
    st.sampled_from(ACCOUNTS[1:]), st.one_of(st.none(), st.integers(0, 60)), max_size=2
)


class Model:
    """The rules, written again independently: postings apply in order; after each debit the
    source must stay >= -bound (bound 0 by default, none for world or an unbounded source)."""

    def __init__(self) -> None:
        self.balances: dict[tuple[str, str], int] = defaultdict(int)

    def apply(self, postings, overdraft) -> set[str]:
        """Apply if allowed and return set(); otherwise return every account that lacks funds
        (the ledger may name any of them: it checks in lock order, not posting order)."""
        return self.apply_many([(postings, overdraft)])

    def apply_many(self, items) -> set[str]:
        """Transactions in sequence, all or nothing."""
        running = defaultdict(int, self.balances)
        short: set[str] = set()
        for postings, overdraft in items:
            for p in postings:
                running[(p.source, p.asset)] -= p.amount
                bound = overdraft.get(p.source, 0)
                balance = running[(p.source, p.asset)]
                if p.source != WORLD and bound is not None and balance < -bound:
                    short.add(p.source)
                running[(p.destination, p.asset)] += p.amount
        if not short:
            self.balances = running
        return short


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()  # each example runs in a savepoint rolled back at teardown
        self.model = Model()
        self.txs: list[tuple[int, list[PostingInput]]] = []
        self.references: dict[str, tuple[list[PostingInput], dict]] = {}
        self.reverted: set[int] = set()
        self.may_be_negative: set[str] = {WORLD}
        self.metadata: dict[str, dict[str, str]] = defaultdict(dict)
        self.counter = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def _post(self, postings, overdraft, reference=None, metadata=None) -> None:
        missing = self.model.apply(postings, overdraft)
        try:
            result = transaction_post(
                postings=postings, overdraft=overdraft, reference=reference, metadata=metadata
            )
        except InsufficientFunds as exc:
            assert exc.account in missing
            return
        assert not missing, f"the model expected {missing} to lack funds"
        assert result.replayed is False
        self.txs.append((result.transaction.pk, list(postings)))
        if reference is not None:
            self.references[reference] = (list(postings), dict(metadata or {}))
        self.may_be_negative |= {s for s, b in overdraft.items() if b != 0}

    @rule(postings=postings_st, overdraft=overdraft_st, with_reference=st.booleans())
    def post(self, postings, overdraft, with_reference):
        self.counter += 1
        reference = f"ref-{self.counter}" if with_reference else None
        self._post(postings, overdraft, reference, {"n": self.counter})

    @rule(items=st.lists(st.tuples(postings_st, overdraft_st), min_size=1, max_size=3))
    def post_bulk(self, items):
        missing = self.model.apply_many(items)
        try:
            results = transactions_post_bulk(
                items=[{"postings": ps, "overdraft": od} for ps, od in items]
            )
        except InsufficientFunds as exc:
            assert exc.account in missing
            return
        assert not missing
        for (postings, overdraft), r in zip(items, results, strict=True):
            self.txs.append((r.result.transaction.pk, list(postings)))
            self.may_be_negative |= {s for s, b in overdraft.items() if b != 0}

    @precondition(lambda self: self.references)
    @rule(data=st.data(), same=st.booleans())
    def replay(self, data, same):
        reference = data.draw(st.sampled_from(sorted(self.references)))
        postings, metadata = self.references[reference]
        if same:
            result = transaction_post(postings=postings, reference=reference, metadata=metadata)
            assert result.replayed is True
            assert list(result.postings) == postings
        else:
            with pytest.raises(ReferenceConflict):
                transaction_post(
                    postings=postings, reference=reference, metadata={**metadata, "x": "y"}
                )

    @precondition(lambda self: self.txs)
    @rule(data=st.data(), force=st.booleans())
    def revert(self, data, force):
        tx_id, postings = data.draw(st.sampled_from(self.txs))
        if tx_id in self.reverted:
            with pytest.raises(AlreadyReverted):
                transaction_revert(transaction_id=tx_id, force=force)
            return
        inverse = [
            PostingInput(p.destination, p.source, p.asset, p.amount) for p in reversed(postings)
        ]
        overdraft = {p.source: None for p in inverse} if force else {}
        missing = self.model.apply(inverse, overdraft)
        try:
            result = transaction_revert(transaction_id=tx_id, force=force)
        except InsufficientFunds as exc:
            assert exc.account in missing
            return
        assert not missing
        assert list(result.postings) == inverse
        self.reverted.add(tx_id)
        self.txs.append((result.transaction.pk, inverse))
        if force:
            self.may_be_negative |= {p.source for p in inverse}

    @rule(
        address=st.sampled_from(ACCOUNTS[1:]),
        key=st.sampled_from(["k1", "k2"]),
        value=st.text("xyz", max_size=3),
        delete=st.booleans(),
    )
    def metadata_change(self, address, key, value, delete):
        if delete and key in self.metadata[address]:
            account_metadata_delete(address=address, key=key)
            del self.metadata[address][key]
        elif not delete:
            account_metadata_set(address=address, metadata={key: value})
            self.metadata[address][key] = value
        assert account_metadata_get(address=address) == self.metadata[address]

    @invariant()
    def books_hold(self):
        found = ledger_invariants_check()
        # each asset sums to zero over all accounts
        assert found.asset_sums == {}
        # every balance row total equals the sum of its postings
        assert found.balance_mismatches == []
        # no account without an overdraft allowance is negative
        for address, _asset, balance in found.negative:
            assert address in self.may_be_negative, (address, balance)
        # every balance equals input - output and the model
        balances = balances_get(pattern="**").accounts
        for (address, asset), expected in self.model.balances.items():
            assert balances.get(address, {}).get(asset, 0) == expected
            v = volumes_get(address=address, asset=asset)
            assert v.balance == v.input - v.output == balance_get(address=address, asset=asset)


@pytest.mark.django_db
def test_ledger_state_machine(write_path):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            # CI default; a nightly soak sets LEDGER_STATEFUL_EXAMPLES=500 and more steps
            max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "25")),
            stateful_step_count=int(os.environ.get("LEDGER_STATEFUL_STEPS", "20")),
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
