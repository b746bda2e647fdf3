"""The k8s manifests parse, match their generator, and every KEDA ScaledObject scales a real
Deployment on the lag of a consumer group the services join, on topics that group reads, with
no more replicas than those topics have partitions."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra import k8s_manifests
from infra.workloads import WORKLOADS, consumer_groups
from libs.topics import CATALOGUE
from services.cli import SERVICES

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
PARTITIONS = {s.name: s.partitions for s in CATALOGUE}


def load_all() -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    files = sorted(K8S.glob("*.yaml"))
    assert files, "no manifests in infra/k8s"
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            assert doc and "kind" in doc and doc["metadata"]["name"], f"{f.name}: bad document"
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def test_committed_manifests_equal_generated():
    problems = k8s_manifests.diff(K8S)
    assert problems == [], "run `python -m infra.k8s_manifests`: " + "; ".join(problems)


def test_check_cli_detects_drift(tmp_path):
    assert k8s_manifests.main(["--dir", str(tmp_path), "--check"]) == 1
    assert k8s_manifests.main(["--dir", str(tmp_path)]) == 0
    assert k8s_manifests.main(["--dir", str(tmp_path), "--check"]) == 0
    f = tmp_path / "parser.yaml"
    f.write_text(f.read_text().replace("maxReplicaCount: 12", "maxReplicaCount: 40"))
    assert k8s_manifests.main(["--dir", str(tmp_path), "--check"]) == 1


def test_a_deployment_per_service_running_a_real_command():
    docs = load_all()
    deployments = {d["metadata"]["name"]: d for d in docs["Deployment"]}
    assert set(deployments) == set(SERVICES)
    configmaps = {d["metadata"]["name"] for d in docs["ConfigMap"]}
    secrets = {d["metadata"]["name"] for d in docs["Secret"]}
    assert len(configmaps) == 1 and len(secrets) == 1
    for name, d in deployments.items():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        assert c["command"][:2] == ["xget", "run"] and c["command"][2:] == [name]
        refs = c["envFrom"]
        assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} == configmaps
        assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == secrets
        ports = {p["name"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["port"] in ports
        assert c["readinessProbe"]["httpGet"]["port"] in ports


def test_scaled_objects_name_real_groups_topics_and_partition_caps():
    docs = load_all()
    deployments = {d["metadata"]["name"] for d in docs["Deployment"]}
    groups = consumer_groups()
    scaled_groups = set()
    for so in docs["ScaledObject"]:
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        topics = []
        for t in spec["triggers"]:
            assert t["type"] == "kafka"
            m = t["metadata"]
            assert m["consumerGroup"] in groups, f"unknown consumer group {m['consumerGroup']}"
            assert m["topic"] in PARTITIONS, f"unknown topic {m['topic']}"
            assert m["topic"] in {s.name for s in groups[m["consumerGroup"]].inputs}, (
                f"group {m['consumerGroup']} does not read {m['topic']}"
            )
            assert int(m["lagThreshold"]) > 0 and int(m["activationLagThreshold"]) >= 0
            assert m["bootstrapServersFromEnv"] == "XGET_KAFKA_BOOTSTRAP"
            scaled_groups.add(m["consumerGroup"])
            topics.append(m["topic"])
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["maxReplicaCount"] <= max(PARTITIONS[t] for t in topics)
    # Every group is scaled on its lag, except those of fixed-size workloads.
    fixed = {g.name for w in WORKLOADS if w.fixed_replicas is not None for g in w.groups}
    assert scaled_groups == set(groups) - fixed


def test_fixed_workloads_have_single_partition_inputs():
    for w in WORKLOADS:
        if w.fixed_replicas is not None:
            assert all(s.partitions == 1 for g in w.groups for s in g.inputs), w.name
