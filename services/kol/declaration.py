"""kol-worker: fetches the following lists of KOL accounts, each answer cached on a topic
before it is used, so no paid call is ever made twice."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import (
    ACCOUNT_EVENTS,
    KOL_COMMANDS,
    KOL_PAGES,
    KOL_PROGRESS,
    LEASE_GRANTS,
    LEASE_REQUESTS,
)

COMMANDS = ConsumerGroup("kol-worker", (KOL_COMMANDS,))

DECLARATION = ServiceDeclaration(
    "kol-worker",
    (COMMANDS,),
    outputs=(KOL_PAGES, KOL_PROGRESS, LEASE_REQUESTS, ACCOUNT_EVENTS),
    reads=(KOL_PAGES, LEASE_GRANTS),
    doc=__doc__ or "",
)
