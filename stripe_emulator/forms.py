"""Decoding of Stripe's form-encoded parameters and typed accessors over them.

The stripe client sends `application/x-www-form-urlencoded` bodies (and query strings for
GET) with bracketed keys: `metadata[order_id]=42`, `expand[0]=data.source`, `expand[]=x`,
`created[gte]=1700000000`. `decode` turns those pairs into nested dicts and lists; the
accessors raise `ApiError`s (400, not saved by idempotency) worded like Stripe's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from .errors import bad_param, missing_param

Params = dict[str, Any]

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_CURRENCY = re.compile(r"^[a-z]{3}$")

# Accepted on every endpoint; the emulator ignores them beyond `expand`.
COMMON_PARAMS = frozenset({"expand"})


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def _split_key(key: str) -> list[str]:
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    rest = key[len(head) :]
    parts = [head]
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            return [key]  # not a well-formed bracket key: keep it verbatim
        parts.append(match.group(1))
        pos = match.end()
    if pos != len(rest):
        return [key]
    return parts


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(isinstance(k, str) and k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def decode(pairs: Iterable[tuple[str, str]]) -> Params:
    """Nest `a[b][0]=v` pairs into dicts; all-numeric keys and `[]` become lists."""
    root: dict[str, Any] = {}
    append_counters: dict[tuple[int, str], int] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            if part == "":
                counter_key = (id(node), "[]")
                part = str(append_counters.get(counter_key, 0))
                append_counters[counter_key] = int(part) + 1
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def check_allowed(params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Stripe refuses parameters an endpoint does not know."""
    allowed_set = set(allowed) | COMMON_PARAMS
    for key in params:
        if key not in allowed_set:
            raise bad_param(
                f"Received unknown parameter: {key}", param=key, code="parameter_unknown"
            )


def get_str(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing_param(name)
        return None
    if not isinstance(value, str):
        raise bad_param(f"Invalid string: {name}", param=name)
    return value


def req_str(params: Mapping[str, Any], name: str) -> str:
    value = get_str(params, name, required=True)
    assert value is not None
    return value


def get_int(
    params: Mapping[str, Any], name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing_param(name)
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise bad_param(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise bad_param(
            f"This value must be greater than or equal to {minimum}.",
            param=name,
            code="parameter_invalid_integer",
        )
    return number


def req_int(params: Mapping[str, Any], name: str, *, minimum: int | None = None) -> int:
    value = get_int(params, name, required=True, minimum=minimum)
    assert value is not None
    return value


def get_bool(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value in ("true", "True", "1"):
        return True
    if value in ("false", "False", "0"):
        return False
    raise bad_param(f"Invalid boolean: {value}", param=name)


def get_float(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_param(f"Invalid number: {value}", param=name) from None


def get_currency(params: Mapping[str, Any], name: str = "currency") -> str:
    value = req_str(params, name).lower()
    if not _CURRENCY.match(value):
        raise bad_param(f"Invalid currency: {value}.", param=name)
    return value


def get_choice(
    params: Mapping[str, Any], name: str, choices: Iterable[str], default: str | None = None
) -> str | None:
    value = get_str(params, name)
    if value is None:
        return default
    options = list(choices)
    if value not in options:
        raise bad_param(f"Invalid {name}: must be one of {', '.join(options)}", param=name)
    return value


def get_metadata(
    params: Mapping[str, Any], existing: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Stripe's metadata rules: merge on update, `""` unsets a key, `metadata=""` clears all."""
    merged: dict[str, str] = dict(existing or {})
    if "metadata" not in params:
        return merged
    raw = params["metadata"]
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise bad_param("Invalid metadata: must be an object", param="metadata")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise bad_param(f"Invalid value for metadata[{key}]", param=f"metadata[{key}]")
        if len(key) > 40:
            raise bad_param("Metadata keys can have up to 40 characters.", param=f"metadata[{key}]")
        if len(value) > 500:
            raise bad_param(
                "Metadata values can have up to 500 characters.", param=f"metadata[{key}]"
            )
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise bad_param("Metadata can have up to 50 keys.", param="metadata")
    return merged


def get_expand(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("expand")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    raise bad_param("Invalid array", param="expand")


def get_created_filter(params: Mapping[str, Any], name: str = "created") -> dict[str, int]:
    """`created=123` (exact) or `created[gte|gt|lte|lt]=...`, as integer seconds."""
    raw = params.get(name)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        exact = get_int(params, name)
        assert exact is not None
        return {"gte": exact, "lte": exact}
    if not isinstance(raw, dict):
        raise bad_param(f"Invalid {name}", param=name)
    result: dict[str, int] = {}
    for op, value in raw.items():
        if op not in ("gte", "gt", "lte", "lt"):
            raise bad_param(
                f"Received unknown parameter: {name}[{op}]",
                param=f"{name}[{op}]",
                code="parameter_unknown",
            )
        number = get_int({op: value}, op)
        if number is None:
            continue
        result[op] = number
    return result


def encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of `decode`, as the stripe client encodes (`a[b]`, `list[0]`)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs.extend(encode(value, name))
        elif isinstance(value, list | tuple):
            pairs.extend(encode({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs
