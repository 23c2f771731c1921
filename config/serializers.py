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

Reading and validating go one step further. Even shallow copies, bound one by one, were half
of the CPU of answering one order (23 copies and binds, ~80 us, for ~35 us of reading). A
serializer made the way the API's views make them — the root (no parent), no context, not
partial — reads (`to_representation`) and validates (`to_internal_value`) with fields bound
once per class to a template instance of that class, shared by every such serializer of the
class and every thread. That is sound because what those two steps read from a field's
serializer is the same for the template and for the instance: the class (error messages name
it), `partial` (False), the context (empty) and the `get_<name>` / `validate_<name>` methods
(called on the instance itself for validation; on the template for a `SerializerMethodField`,
so a `get_<name>` must read only its argument, which every serializer here does); and a field
is not changed by reading or validating with it. The readable fields are not shared when one
of them holds other fields or needs its serializer for a default (`requires_context`:
`CurrentUserDefault`); the writable ones also not when one needs it for a validator
(`UniqueValidator`: the instance) or a read-only field has a default. `fields`
itself (the browsable API, the schema, `serializer.fields[...]`) is still each instance's own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty


class FieldsOnce:
    """Mixin, first in the bases: `class OrderOutput(FieldsOnce, serializers.ModelSerializer)`."""

    parent: Any
    partial: bool
    _context: Mapping[str, Any]

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

    @property
    def _readable_fields(self) -> Any:
        shared = self._shared_fields()[0]
        if shared is None:
            return super()._readable_fields  # type: ignore[misc]
        return shared

    @property
    def _writable_fields(self) -> Any:
        shared = self._shared_fields()[1]
        if shared is None:
            return super()._writable_fields  # type: ignore[misc]
        return shared

    def _read_only_defaults(self) -> dict[str, Any]:
        # DRF reads them from the instance's own `fields` for every validation; a class whose
        # writable fields are shared has none (checked when they were bound).
        if self._shared_fields()[1] is None:
            return super()._read_only_defaults()  # type: ignore[misc,no-any-return]
        return {}

    def _shared_fields(self) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
        """The (readable, writable) fields bound once to a template of this class; either is
        None when this serializer must read or validate with its own (module docstring)."""
        if self.parent is not None or self.partial or self._context:
            return None, None
        cls = type(self)
        shared: tuple[tuple[Any, ...] | None, tuple[Any, ...] | None] | None
        shared = cls.__dict__.get("_shared_once")
        if shared is None:
            fields = list(cls().fields.values())  # type: ignore[attr-defined]
            readable = [f for f in fields if not f.write_only]
            writable = [f for f in fields if not f.read_only]
            shared = (
                None
                if any(_holds_fields(f) or _default_needs_serializer(f) for f in readable)
                else tuple(readable),
                None
                if any(
                    _holds_fields(f)
                    or _default_needs_serializer(f)
                    or _validator_needs_serializer(f)
                    for f in writable
                )
                or any(f.read_only and f.default is not empty for f in fields)
                else tuple(writable),
            )
            cls._shared_once = shared  # type: ignore[attr-defined]  # a race builds it twice
        return shared


def _holds_fields(field: Any) -> bool:
    return (
        isinstance(field, serializers.BaseSerializer)
        or hasattr(field, "child")
        or hasattr(field, "child_relation")
    )


def _default_needs_serializer(field: Any) -> bool:
    return getattr(field.default, "requires_context", False) is True


def _validator_needs_serializer(field: Any) -> bool:
    """Also computes the field's lazily built validators before the field is shared."""
    return any(getattr(v, "requires_context", False) for v in field.validators)
