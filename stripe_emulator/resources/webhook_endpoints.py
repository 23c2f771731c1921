"""`/v1/webhook_endpoints`: what `manage.py stripe_webhooks setup|check` drives.

An endpoint created here is also registered with the webhook dispatcher (through
`EmulatorState.endpoint_hook`): it receives the events of its `enabled_events` (`*` = all),
signed with its own `whsec_` secret, platform or Connect (`connect=true`) events.
"""

from __future__ import annotations

from .. import forms
from ..errors import bad_param
from ..forms import Params
from ..state import Ctx, EmulatorState, Rendered, new_id
from ..store import Obj

PARAMS = ("url", "enabled_events", "api_version", "connect", "description", "metadata")


def _events(p: Params) -> list[str]:
    raw = p.get("enabled_events")
    if isinstance(raw, dict):  # enabled_events[0]=...&enabled_events[1]=...
        raw = [raw[k] for k in sorted(raw, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) and e for e in raw):
        raise bad_param(
            "Missing required param: enabled_events.",
            param="enabled_events",
            code="parameter_missing",
        )
    return list(raw)


def webhook_endpoint_create(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    forms.check_allowed(p, PARAMS)
    url = forms.get_str(p, "url")
    if not url:
        raise bad_param("Missing required param: url.", param="url", code="parameter_missing")
    endpoint: Obj = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": forms.get_str(p, "api_version"),
        "application": None,
        "created": st.now(),
        "description": forms.get_str(p, "description"),
        "enabled_events": _events(p),
        "livemode": False,
        "metadata": forms.get_metadata(p),
        "_secret": "whsec_" + new_id("x")[2:],
        "status": "enabled",
        "url": url,
        "_connect": bool(forms.get_bool(p, "connect")),
    }
    st.insert("webhook_endpoint", ctx.account, endpoint)
    if st.endpoint_hook is not None:
        st.endpoint_hook(endpoint)
    created = Rendered(st.render(endpoint))
    created["secret"] = endpoint["_secret"]  # only the create answer shows it
    return created


def webhook_endpoint_retrieve(st: EmulatorState, ctx: Ctx, p: Params, endpoint_id: str) -> Obj:
    return st.get_owned("webhook_endpoint", endpoint_id, ctx.account)


def webhook_endpoint_update(st: EmulatorState, ctx: Ctx, p: Params, endpoint_id: str) -> Obj:
    forms.check_allowed(p, ("url", "enabled_events", "description", "metadata", "disabled"))
    endpoint = st.get_owned("webhook_endpoint", endpoint_id, ctx.account)
    if "enabled_events" in p:
        endpoint["enabled_events"] = _events(p)
    if "url" in p:
        endpoint["url"] = forms.get_str(p, "url")
    if "description" in p:
        endpoint["description"] = forms.get_str(p, "description")
    st.store.touch(endpoint_id)
    if st.endpoint_hook is not None:
        st.endpoint_hook(endpoint)
    return endpoint


def webhook_endpoint_list(st: EmulatorState, ctx: Ctx, p: Params) -> Obj:
    return st.list_page("webhook_endpoint", ctx.account, p, "/v1/webhook_endpoints")
