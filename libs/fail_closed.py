"""Fail closed: a service refuses to start with an empty or well-known secret.

Each service names the secrets it uses (SECRETS_OF); `xget run` checks them before anything
starts and exits with a message naming every variable to set. XGET_INSECURE_DEV_DEFAULTS=true
lets a developer start anyway (logged as a warning); `make up` needs no such switch, since it
generates random secrets into the data dir (infra/stack.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from libs.settings import Settings

log = logging.getLogger(__name__)

# Values from earlier defaults, examples and manifests: as good as no secret at all.
WELL_KNOWN = frozenset(
    {"change-me", "change-me-too", "changeme", "secret", "password", "xget", "token"}
)

# Setting -> what it protects (for the message).
PURPOSE = {
    "api_token": "the bearer token of the gateway and admin APIs",
    "webhook_secret": "the HMAC key that signs webhook reports",
    "account_key": "the key that encrypts X account and proxy secrets",
}

SECRETS_OF: dict[str, tuple[str, ...]] = {
    "task-gateway": ("api_token",),
    "account-manager": ("api_token", "account_key"),
    "scraper": ("account_key",),  # opens the sealed cookies of its leased accounts
    "reporter": ("webhook_secret",),
}


class InsecureSecrets(SystemExit):
    """Exits the process with the message (no traceback): what to set, and how."""


def weak(value: str) -> bool:
    v = value.strip()
    return not v or v.lower() in WELL_KNOWN


def required_secrets(settings: Settings, services: Iterable[str]) -> list[str]:
    names = {n for s in services for n in SECRETS_OF.get(s, ())}
    if (
        "kol-worker" in services
        and settings.kol_source == "x"
        and settings.kol_x_accounts == "manager"
    ):
        names.add("account_key")  # it leases accounts like a scraper
    return sorted(names)


def check_secrets(settings: Settings, services: Iterable[str]) -> None:
    """Raise InsecureSecrets when a secret these services use is empty or well known."""
    services = list(services)
    bad = [
        n
        for n in required_secrets(settings, services)
        if weak(getattr(settings, n).get_secret_value())
    ]
    if not bad:
        return
    what = "; ".join(f"XGET_{n.upper()} ({PURPOSE[n]})" for n in bad)
    if settings.insecure_dev_defaults:
        log.warning(
            "XGET_INSECURE_DEV_DEFAULTS is on: starting with empty or default "
            "secrets: %s. Never do this outside a developer's machine.",
            what,
        )
        return
    raise InsecureSecrets(
        f"refusing to start {', '.join(services)}: empty or default secret(s): {what}. "
        "Set each to a long random value (e.g. `python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`); `make up` generates them into its data dir. "
        "For local development only, XGET_INSECURE_DEV_DEFAULTS=true starts anyway."
    )
