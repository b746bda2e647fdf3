"""Each service's declaration (services/<pkg>/declaration.py) is the one truth about its topics:
the code publishes only to declared outputs, reads only declared tables, and every operations
table (workloads, `xget lag`) is built from the declarations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.workloads import WORKLOADS
from libs import topics
from libs.declaration import ServiceDeclaration
from services import declarations

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "task_gateway": declarations.TASK_GATEWAY,
    "scraper": declarations.SCRAPER,
    "parser": declarations.PARSER,
    "dedup_counter": declarations.DEDUP_COUNTER,
    "media_downloader": declarations.MEDIA_DOWNLOADER,
    "reporter": declarations.REPORTER,
    "kol": declarations.KOL_WORKER,
    "account_manager": declarations.ACCOUNT_MANAGER,
}
SPECS = {name: v for name, v in vars(topics).items() if isinstance(v, topics.TopicSpec)}
# What libs/leases.py's LeaseClient publishes for the service that uses it.
LEASE_CLIENT_WRITES = {"LEASE_REQUESTS", "ACCOUNT_EVENTS"}


def _uses(package: str) -> tuple[set[str], set[str], bool]:
    """(topics passed to Outgoing(...), topics read as TopicTable(...), uses LeaseClient)."""
    written, tables, leases = set(), set(), False
    for path in sorted((ROOT / "services" / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "LeaseClient":
                leases = True
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            args = [a.id for a in node.args if isinstance(a, ast.Name) and a.id in SPECS]
            if node.func.id == "Outgoing" and args:
                written.add(args[0])
            elif node.func.id == "TopicTable" and args:
                tables.add(args[0])
    return written, tables, leases


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_code_publishes_only_to_declared_outputs(package):
    decl: ServiceDeclaration = PACKAGES[package]
    written, tables, leases = _uses(package)
    if leases:
        written |= LEASE_CLIENT_WRITES
    undeclared = {t for t in written if SPECS[t].name not in decl.writes}
    assert not undeclared, f"{decl.name} publishes to undeclared {sorted(undeclared)}"
    unread = {t for t in tables if SPECS[t] not in decl.reads}
    assert not unread, f"{decl.name} reads undeclared tables {sorted(unread)}"
    # Nothing declared that the code never writes (a stale declaration misleads operators).
    stale = {s.name for s in decl.outputs} - {SPECS[t].name for t in written}
    assert not stale, f"{decl.name} declares outputs it never writes: {sorted(stale)}"


def test_every_service_is_deployed_once_and_lag_knows_every_group():
    assert sorted(w.name for w in WORKLOADS) == sorted(d.name for d in declarations.ALL)
    assert {w.declaration for w in WORKLOADS} == set(declarations.ALL)
    groups = declarations.consumer_groups()
    assert len(groups) == sum(len(d.groups) for d in declarations.ALL), "a group name is reused"
    for d in declarations.ALL:
        for g in d.groups:
            assert g.inputs and all(isinstance(t, topics.TopicSpec) for t in g.inputs)
            assert set(g.inputs) <= set(topics.CATALOGUE), (
                f"{g.name}: an input not in the catalogue"
            )


def test_a_consumer_group_declared_twice_is_refused():
    g = declarations.PARSER.groups[0]
    with pytest.raises(ValueError, match="declared twice"):
        ServiceDeclaration("x", (g, g), outputs=())
