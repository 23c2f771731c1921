"""How the interpreter talks to the store: one batched balance query for the whole program,
@world never queried, metadata fetched once per account, lazy loads only when needed."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ledger.numscript import StaticStore, parse, run
from ledger.numscript import flags as ff
from ledger.numscript.bench import SPLIT_SCRIPT, SPLIT_VARS, split_store


class RecordingStore:
    def __init__(self, inner: StaticStore) -> None:
        self.inner = inner
        self.balance_queries: list[dict[str, list[tuple[str, str]]]] = []
        self.metadata_queries: list[list[str]] = []

    def get_balances(
        self, query: Mapping[str, Collection[tuple[str, str]]]
    ) -> dict[str, dict[tuple[str, str], int]]:
        self.balance_queries.append({a: sorted(keys) for a, keys in query.items()})
        return self.inner.get_balances(query)

    def get_account_metadata(self, accounts: Collection[str]) -> dict[str, dict[str, str]]:
        self.metadata_queries.append(sorted(accounts))
        return self.inner.get_account_metadata(accounts)


def test_split_script_makes_one_balance_query_and_one_metadata_query() -> None:
    # given
    store = RecordingStore(split_store())
    # when
    result = run(parse(SPLIT_SCRIPT), vars=SPLIT_VARS, store=store)
    # then
    assert store.balance_queries == [{"orders:1042": [("USD/2", "")]}]
    assert store.metadata_queries == [["restaurants:17"]]
    assert [(p.destination, p.amount) for p in result.postings] == [
        ("riders:9", 499),
        ("platform:fees", 569),
        ("restaurants:17", 3219),
    ]


def test_all_statically_known_sources_of_all_statements_are_batched() -> None:
    source = """
    vars { account $a  asset $cur }
    send [$cur 1] ( source = { $a @b allowing overdraft up to [$cur 5] @world } destination = @x )
    send [EUR 1] ( source = max [EUR 1] from { 1/2 from @c remaining from @d } destination = @x )
    send [COIN 1] ( source = @e allowing unbounded overdraft destination = @x )
    save [GBP 1] from @f
    """
    store = RecordingStore(StaticStore({"a": {"USD": 1}, "c": {"EUR": 5}, "d": {"EUR": 5}}))
    run(parse(source), vars={"a": "a", "cur": "USD"}, store=store)
    assert store.balance_queries == [
        {
            "a": [("USD", "")],
            "b": [("USD", "")],
            "c": [("EUR", "")],
            "d": [("EUR", "")],
            "f": [("GBP", "")],
        }
    ]


def test_world_is_never_queried() -> None:
    store = RecordingStore(StaticStore())
    run(
        parse("send [COIN 5] ( source = @world destination = @a )"),
        store=store,
    )
    assert store.balance_queries == []


def test_balance_origin_is_loaded_before_and_not_queried_again() -> None:
    source = "vars { monetary $b = balance(@a, COIN) }\nsend $b ( source = @a destination = @c )"
    store = RecordingStore(StaticStore({"a": {"COIN": 7}}))
    result = run(parse(source), store=store)
    assert store.balance_queries == [{"a": [("COIN", "")]}]
    assert [p.amount for p in result.postings] == [7]


def test_mid_script_balance_sees_credits_made_before_it_is_loaded() -> None:
    # @d is only a destination, then read by balance(): its store balance (10) must be added
    # to what the script already credited (3). Upstream Go would answer 3 (it preloads
    # source balances only, so a destination's row starts at 0 and the store is never asked).
    source = """
    send [COIN 3] ( source = @world destination = @d )
    send balance(@d, COIN) ( source = @world destination = @e )
    """
    store = RecordingStore(StaticStore({"d": {"COIN": 10}}))
    result = run(parse(source), store=store, feature_flags={ff.MID_SCRIPT_FUNCTION_CALL})
    assert [p.amount for p in result.postings] == [3, 13]
    assert store.balance_queries == [{"d": [("COIN", "")]}]


def test_scaling_asks_for_every_scale_of_the_base_asset() -> None:
    source = "send [EUR/2 100] ( source = @src with scaling through @swap destination = @d )"
    store = RecordingStore(StaticStore({"src": {"EUR": 1, "EUR/3": 7, "USD": 9}}))
    result = run(parse(source), store=store, feature_flags={ff.ASSET_SCALING})
    assert store.balance_queries == [{"src": [("EUR/*", "")]}]
    assert [(p.source, p.destination, p.asset, p.amount) for p in result.postings] == [
        ("src", "swap", "EUR", 1),
        ("swap", "src", "EUR/2", 100),
        ("src", "d", "EUR/2", 100),
    ]


def test_metadata_is_fetched_once_per_account() -> None:
    source = """
    vars {
      portion $p = meta(@shop, "commission")
      account $owner = meta(@shop, "owner")
    }
    """
    store = RecordingStore(StaticStore(metadata={"shop": {"commission": "1/4", "owner": "u:1"}}))
    run(parse(source), store=store)
    assert store.metadata_queries == [["shop"]]


def test_static_store_accepts_uncolored_shorthand_and_colored_rows() -> None:
    store = StaticStore({"a": {"USD": 1, ("USD", "RED"): 2}})
    assert store.get_balances({"a": [("USD", ""), ("USD", "RED"), ("EUR", "")]}) == {
        "a": {("USD", ""): 1, ("USD", "RED"): 2, ("EUR", ""): 0}
    }
