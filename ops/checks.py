"""Deploy checks (`manage.py check --deploy`) beyond Django's own."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def development_secrets_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every secret whose value is a development default (public: it is in the repository)
    is an error in a deployment: a webhook signed with `whsec_emulator` would be accepted."""
    defaults: dict[str, frozenset[str]] = getattr(settings, "DEVELOPMENT_SECRETS", {})
    current = {
        "SECRET_KEY": [settings.SECRET_KEY],
        "STRIPE_API_KEY": [getattr(settings, "STRIPE_API_KEY", "")],
        "STRIPE_WEBHOOK_SECRET": list(getattr(settings, "STRIPE_WEBHOOK_SECRETS", [])),
    }
    errors = []
    for name, values in current.items():
        if not any(values) or any(value in defaults.get(name, ()) for value in values):
            errors.append(
                Error(
                    f"{name} is empty or a development default, which is public.",
                    hint=f"Set {name} from the secret store (see README, Configuration).",
                    id="ops.E001",
                )
            )
    return errors
