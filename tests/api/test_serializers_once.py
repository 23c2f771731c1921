"""config.serializers.FieldsOnce: fields built once per class, the same fields and the same
output as DRF builds for every instance, never shared between two serializers."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from rest_framework import serializers

from config.serializers import FieldsOnce
from marketplace.api import serializers as s
from tests.marketplace.factories import CampaignFactory, OrderFactory

ONCE = [
    cls
    for _, cls in inspect.getmembers(s, inspect.isclass)
    if issubclass(cls, FieldsOnce) and cls.__module__ == s.__name__
]


def _plain(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
    """The same serializer, its fields built by DRF itself."""
    serializer = cls(*args, **kwargs)
    return super(FieldsOnce, serializer).get_fields()


def test_every_marketplace_serializer_builds_its_fields_once() -> None:
    assert s.OrderOutput in ONCE and s.OrderCreateInput in ONCE and len(ONCE) >= 20


@pytest.mark.django_db
@pytest.mark.parametrize("cls", ONCE, ids=lambda c: c.__name__)
def test_the_fields_are_those_drf_builds(cls: type[Any]) -> None:
    once = cls().get_fields()
    again = cls().get_fields()
    plain = _plain(cls)
    assert list(once) == list(plain)
    assert {k: repr(v) for k, v in once.items()} == {k: repr(v) for k, v in plain.items()}
    assert all(once[name] is not again[name] for name in once)


@pytest.mark.django_db
def test_an_order_serializes_as_drf_serializes_it() -> None:
    campaign = CampaignFactory(funding=10_000)
    order = OrderFactory(coupon=campaign.code)
    plain = type(
        "PlainOrderOutput",
        (serializers.ModelSerializer,),
        {
            "Meta": s.OrderOutput.Meta,
            "coupon": serializers.SerializerMethodField(),
            "ledger_address": serializers.CharField(read_only=True),
            "refundable": serializers.IntegerField(read_only=True),
            "get_coupon": s.OrderOutput.get_coupon,
        },
    )
    first, second = s.OrderOutput(order), s.OrderOutput(order)
    assert first.data == plain(order).data == second.data
    assert first.data["coupon"] == campaign.code
    assert first.fields["status"] is not second.fields["status"]
    assert first.fields["status"].parent is first and second.fields["status"].parent is second


def test_input_validation_is_unchanged() -> None:
    good = s.OrderCreateInput(data={"restaurant": 1, "subtotal": 1500})
    assert good.is_valid(), good.errors
    assert good.validated_data["delivery_fee"] == 0
    bad = s.OrderCreateInput(data={"restaurant": 0, "subtotal": "12", "customer_email": "x"})
    assert not bad.is_valid()
    assert set(bad.errors) == {"restaurant", "subtotal", "customer_email"}
    assert s.OrderCreateInput(data={"restaurant": 1, "subtotal": 1500}).is_valid()


# --- fields bound once and shared for reading and validating --------------------------------

INPUTS = [cls for cls in ONCE if cls.__name__.endswith("Input")]
# Each input class: a valid body, an invalid one (every field wrong where it can be).
BODIES: dict[str, list[dict[str, Any]]] = {
    "OrderCreateInput": [
        {"restaurant": 1, "subtotal": 1500, "coupon": "X", "customer_email": "a@b.co"},
        {"restaurant": 0, "subtotal": "12", "delivery_fee": -1, "customer_email": "x"},
    ],
    "RefundCreateInput": [
        {"amount": 100, "bearer": "restaurant", "restaurant_share": "50%"},
        {"amount": 0, "bearer": "nobody", "rider_share": "150%", "reason": "x" * 501},
    ],
    "CampaignCreateInput": [
        {"code": "spring", "budget": 10, "per_order_cap": 5, "starts_at": "2030-01-01T00:00Z"},
        {
            "code": "no good",
            "budget": 10,
            "per_order_cap": 5,
            "starts_at": "2030-01-02T00:00Z",
            "ends_at": "2030-01-01T00:00Z",
        },
    ],
}


def _own_fields(cls: type[Any], **kwargs: Any) -> Any:
    """The same class, validating or reading with its own fields (a context turns the shared
    ones off)."""
    serializer = cls(**kwargs, context={"own": True})
    assert serializer._shared_fields() == (None, None)
    return serializer


@pytest.mark.parametrize("cls", INPUTS, ids=lambda c: c.__name__)
def test_validation_with_shared_fields_is_validation_with_its_own(cls: type[Any]) -> None:
    # given: each body, empty and wrong-typed ones too
    bodies = [{}, {"unknown": 1}, [], *BODIES.get(cls.__name__, [])]
    for data in bodies:
        # when
        shared = cls(data=data)
        own = _own_fields(cls, data=data)
        # then: the same outcome, the same errors, the same values
        assert shared._shared_fields()[1] is not None
        assert shared.is_valid() == own.is_valid(), data
        assert shared.errors == own.errors, data
        if not own.errors:
            assert dict(shared.validated_data) == dict(own.validated_data)


@pytest.mark.django_db
def test_an_order_reads_the_same_with_shared_fields_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    # given: orders with and without a coupon
    campaign = CampaignFactory(funding=10_000)
    orders = [OrderFactory(coupon=campaign.code if i % 2 else None) for i in range(6)]
    expected = [_own_fields(s.OrderOutput, instance=order).data for order in orders]
    # when: 8 threads serialize them at once, 50 times each
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: s.OrderOutput(orders[i % 6]).data, range(400)))
    # then
    assert [dict(d) for d in got] == [dict(expected[i % 6]) for i in range(400)]
    assert expected[1]["coupon"] == campaign.code and expected[0]["coupon"] is None
    first, second = s.OrderOutput(orders[0]), s.OrderOutput(orders[1])
    assert first._readable_fields is second._readable_fields


def test_what_needs_its_serializer_is_not_shared() -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.validators import UniqueValidator

    class WithUser(FieldsOnce, serializers.Serializer):
        by = serializers.HiddenField(default=serializers.CurrentUserDefault())
        name = serializers.CharField()

    class WithUnique(FieldsOnce, serializers.Serializer):
        name = serializers.CharField(
            validators=[UniqueValidator(queryset=get_user_model().objects.all())]
        )

    class WithReadOnlyDefault(FieldsOnce, serializers.Serializer):
        kind = serializers.CharField(read_only=True, default="a")
        name = serializers.CharField()

    class Nested(FieldsOnce, serializers.Serializer):
        tags = serializers.ListField(child=serializers.CharField())

    readable, writable = WithUser()._shared_fields()
    assert readable is not None and writable is None  # the hidden field is write-only
    assert WithUnique()._shared_fields()[1] is None
    assert WithUnique()._shared_fields()[0] is not None  # reading needs no validator
    assert WithReadOnlyDefault()._shared_fields()[1] is None
    assert Nested()._shared_fields() == (None, None)
    # partial, a parent (many=True) or a context: the instance's own fields
    assert s.OrderCreateInput(data={}, partial=True)._shared_fields() == (None, None)
    assert s.OrderOutput([], many=True).child._shared_fields() == (None, None)
