"""account-manager: owns the pool of X accounts and proxies, grants leases within X's limits,
and serves the account admin API."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNT_EVENTS,
    ACCOUNT_STATE,
    LEASE_GRANTS,
    LEASE_REQUESTS,
    PROXY_STATE,
    TASK_ACCOUNT_WAITS,
)

POOL = ConsumerGroup("account-manager", (ACCOUNT_COMMANDS, ACCOUNT_EVENTS, LEASE_REQUESTS))

DECLARATION = ServiceDeclaration(
    "account-manager",
    (POOL,),
    # ACCOUNT_COMMANDS: the admin API publishes what an operator asks for.
    outputs=(LEASE_GRANTS, ACCOUNT_STATE, PROXY_STATE, TASK_ACCOUNT_WAITS, ACCOUNT_COMMANDS),
    reads=(ACCOUNT_STATE, PROXY_STATE),
    http_port=8081,
    doc=__doc__ or "",
)
