"""drf-spectacular postprocessing: every operation documents every status code it can answer.

Each view documents its successes and the errors particular to it; what every operation can
answer is added here, once, with the error body `ErrorBody` (`{"code", "message", ...}`,
config.api.exception_handler):

- 400 everywhere: InputGuardMiddleware refuses a path or query parameter PostgreSQL could not
  take, and list filters are validated;
- 401 and 403 everywhere: every operation needs a token or a session, and a named permission
  (config.permissions.NamedPermissions);
- 404 where the path names an object, a cursor can be invalid, or a write's body names one
  (the restaurant of a new order, the rider to assign);
- 409 and 503 for writes (a conflicting state or idempotency key; the ledger busy after its
  bounded retries, or Stripe unavailable), 415 for a body of an unsupported media type;
- 502 for writes that call Stripe (the marketplace's and payouts'), 402 for the two that
  create a payment (a declined card).
An operation that already documents a code keeps its own description.
"""

from __future__ import annotations

from typing import Any

ERROR_BODY = {
    "type": "object",
    "description": "Every error: a machine-readable code and a human message; some errors add "
    "fields (`errors` per field for a validation error, `field`, `constraint`...).",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {}},
    },
    "required": ["code", "message"],
    "additionalProperties": {},
}

DESCRIPTIONS = {
    "400": "Invalid input (a field, a query parameter, a value the database cannot store).",
    "401": "No valid credentials (a token or a session).",
    "402": "The card was declined.",
    "403": "The caller lacks the named permission this needs.",
    "404": "No such object (or an invalid cursor).",
    "409": "Conflicts with the object's state, an idempotency key or existing data.",
    "415": "Unsupported media type of the body.",
    "502": "Stripe refused or failed.",
    "503": "Try again: the ledger is busy or Stripe's answer is unknown.",
}

_UNSAFE = {"post", "put", "patch", "delete"}
_PAYMENT_CREATING = {"/api/v1/orders/", "/api/v1/orders/{id}/payment_intent/"}


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["400", "401", "403"]
    params = operation.get("parameters", [])
    if "{" in path or method in _UNSAFE or any(p.get("name") == "cursor" for p in params):
        codes.append("404")
    if method in _UNSAFE:
        codes += ["409", "503"]
        if "requestBody" in operation:
            codes.append("415")
        if not path.startswith("/api/v1/ledger/"):
            codes.append("502")
        if path in _PAYMENT_CREATING:
            codes.append("402")
    return codes


def postprocess_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ERROR_BODY
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code in _codes(path, method, operation):
                if code in responses:
                    continue
                responses[code] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": ref}},
                }
            operation["responses"] = dict(sorted(responses.items()))
    return result
