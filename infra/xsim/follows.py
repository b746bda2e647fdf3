"""Who follows whom, derived deterministically, shared by the GraphQL lists and the REST API.

Members of a target's list are numbered j = 0..total-1 (newest follow first). Each member has
a user id and an index k that picks its fixture user (k mod the fixture's users) and varies
its screen name, so a user's attributes depend on its id alone, whichever list or API shows it.

* Per-target lists (default, and always for Followers/Retweeters): member j of target T is
  user (tag(T) << 20) | (j + 1), k = j. Lists of different targets never overlap.
* Following with `following_pool` P > 0: every target follows `total` (at most P) distinct
  users of one population of P, picked by a per-target start and stride, so targets share
  followed users (10 targets following 50 of 150 share each user about 3.3 times).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from .config import SimConfig
from .corpus import h64

TAG_BITS = (1 << 39) - 1


def user_id_of_name(seed: int, screen_name: str) -> int:
    """The id UserByScreenName (and the REST API) give a handle."""
    return h64("user", seed, screen_name.lower()) & ((1 << 53) - 1)


@dataclass(frozen=True)
class Member:
    uid: int
    k: int  # population / template index


class FollowGraph:
    def __init__(self, config: SimConfig):
        self.config = config

    def list_tag(self, op: str, target: str) -> int:
        return h64("list", self.config.seed, op, target) & TAG_BITS

    def total(self, op: str, target: str) -> int:
        n = self.config.list_total(target)
        if op == "Following" and self.config.following_pool > 0:
            n = min(n, self.config.following_pool)
        return n

    def member(self, op: str, target: str, j: int) -> Member:
        pool = self.config.following_pool
        if op != "Following" or pool <= 0:
            return Member((self.list_tag(op, target) << 20) | (j + 1), j)
        start = h64("fstart", self.config.seed, target) % pool
        step = 1 + h64("fstep", self.config.seed, target) % max(1, pool - 1)
        while gcd(step, pool) != 1:
            step += 1
        k = (start + j * step) % pool
        ptag = h64("pool", self.config.seed) & TAG_BITS
        return Member((ptag << 20) | (k + 1), k)

    def following_ids(self, target: str) -> list[str]:
        return [
            str(self.member("Following", target, j).uid)
            for j in range(self.total("Following", target))
        ]


def screen_name(base: bytes, k: int, templates: int) -> bytes:
    """The fixture's name for the first round of templates, then name_<round>."""
    rnd = k // max(1, templates)
    return base if rnd == 0 else base + b"_" + str(rnd).encode()
