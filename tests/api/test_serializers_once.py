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
