"""The scraper's account source: the shared in-process pool from libs (the KOL job uses it too)."""

from libs.account_pool import (  # noqa: F401
    AccountSource, LocalAccountPool, NoUsableAccountError, parse_accounts,
)
