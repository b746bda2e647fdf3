"""What a service is, declared once in its own package (`services/<pkg>/declaration.py`):
its name (`xget run NAME`), the consumer groups it joins with their input topics, the topics it
writes, the topic tables it reads, and its own HTTP port.

Everything else reads the declaration instead of repeating it: the service's `serve()` builds its
consumers from the groups, `infra/workloads.py` (and the k8s manifests generated from it) scales
on the groups' lag, `xget lag` names the groups, and tests check that the code publishes only
to declared outputs (tests/unit/test_declarations.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .topics import DEAD_LETTERS, SERVICE_LOGS, TopicSpec


@dataclass(frozen=True)
class ConsumerGroup:
    name: str  # the group id without the topic prefix
    inputs: tuple[TopicSpec, ...]

    def group_id(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    @property
    def max_members(self) -> int:
        """Members beyond the largest input's partition count get no partition at all."""
        return max(s.partitions for s in self.inputs)


@dataclass(frozen=True)
class ServiceDeclaration:
    name: str  # `xget run NAME`
    groups: tuple[ConsumerGroup, ...]
    outputs: tuple[TopicSpec, ...]
    # Compacted topics read whole into memory (libs/topic_table.py), not consumed in a group.
    reads: tuple[TopicSpec, ...] = ()
    http_port: int | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a consumer group is declared twice")

    @property
    def writes(self) -> frozenset[str]:
        """Topic names this service may publish to: its outputs, dead letters (every consumer
        loop dead-letters a record it cannot handle) and service logs (every process ships
        its warnings and errors, libs/log_shipper.py)."""
        return frozenset(s.name for s in (*self.outputs, DEAD_LETTERS, SERVICE_LOGS))

    def group(self, name: str) -> ConsumerGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"{self.name} declares no consumer group {name!r}")
