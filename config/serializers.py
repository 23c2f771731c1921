"""DRF serializers whose fields are built once per class.

A `ModelSerializer` builds its fields from the model's metadata for every instance (field
classes, kwargs, choices, unique validators: ~1 ms for an order's 23 fields, the largest part
of answering a request with one order), and a plain `Serializer` deep-copies its declared
fields for every instance. `FieldsOnce` builds them the first time a class is used and gives
each instance shallow copies of those templates: fresh field objects, bound to the new
serializer as usual (`bind` sets the name, parent and source on the copy), sharing with the
template only what fields never change after `__init__` (their kwargs, validators, error
messages, choices). The output is the same, field for field (tests/api/test_serializers_once.py).

Fields that hold other fields (serializers, `ListField`/`DictField` children, many-related
fields) are deep-copied as DRF does: their children are bound to them. Only for serializers whose
fields do not depend on the instance, the data or the context (`get_fields` not overridden
to do so): every serializer of the marketplace API.
"""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers


class FieldsOnce:
    """Mixin, first in the bases: `class OrderOutput(FieldsOnce, serializers.ModelSerializer)`."""

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built: dict[str, Any] | None = cls.__dict__.get("_fields_once")
        if built is None:
            built = super().get_fields()  # type: ignore[misc]
            cls._fields_once = built  # type: ignore[attr-defined]  # a race builds it twice: same
        return {
            name: copy.deepcopy(field) if _holds_fields(field) else copy.copy(field)
            for name, field in built.items()
        }


def _holds_fields(field: Any) -> bool:
    return (
        isinstance(field, serializers.BaseSerializer)
        or hasattr(field, "child")
        or hasattr(field, "child_relation")
    )
