"""The production-shaped compose stack validates and runs real commands; the alert rules and
the Grafana dashboard only name metrics the services really export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.workloads import METRICS_PORT, by_name
from libs.metrics import metric_names
from services.cli import SERVICES

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
METRIC_RE = re.compile(r"\bxget_[a-z0-9_]+")


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


COMPOSE_SECRETS = ("XGET_API_TOKEN", "XGET_WEBHOOK_SECRET", "XGET_ACCOUNT_KEY")


def docker_compose_config(env: dict[str, str], empty: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    # an empty --env-file: a developer's .env must not supply what the test leaves out
    empty.write_text("")
    return subprocess.run(
        [exe, "--env-file", str(empty), "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_validates_with_docker_compose(tmp_path):
    r = docker_compose_config(
        {name: f"ci-{name.lower()}" for name in COMPOSE_SECRETS}, tmp_path / "empty.env"
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
def test_compose_requires_every_secret(missing, tmp_path):
    """Fail closed: no default token, webhook secret or account key in the compose stack."""
    r = docker_compose_config(
        {name: f"ci-{name.lower()}" for name in COMPOSE_SECRETS if name != missing},
        tmp_path / "empty.env",
    )
    assert r.returncode != 0 and f"set {missing}" in r.stderr, r.stderr


def test_every_service_runs_a_real_command_with_health_and_replicas():
    services = compose()["services"]
    runs = {}
    for name, svc in services.items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["xget", "run"]:
            assert len(cmd) == 3, f"{name}: one service per container"
            runs[cmd[2]] = svc
    assert set(runs) == set(SERVICES), "every service of `xget run` in the stack, nothing else"
    workloads = by_name()
    for name, svc in runs.items():
        test = svc["healthcheck"]["test"]
        assert f":{METRICS_PORT}/readyz" in " ".join(test), name
        assert svc["environment"]["XGET_METRICS_PORT"] == str(METRICS_PORT)
        replicas = svc["deploy"]["replicas"]
        assert replicas == workloads[name].compose_replicas, name
        assert 1 <= replicas <= workloads[name].max_replicas, name
    for infra in (
        "redpanda",
        "clickhouse",
        "minio",
        "otel-collector",
        "prometheus",
        "alertmanager",
        "grafana",
    ):
        assert infra in services
        assert "image" in services[infra] and ":" in services[infra]["image"], infra


def test_mounted_config_files_exist():
    for name, svc in compose()["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name} mounts missing {src}"


def test_prometheus_scrapes_every_service_and_loads_the_rules():
    cfg = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    assert cfg["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "xget"]
    (sd,) = job["dns_sd_configs"]
    assert set(sd["names"]) == set(SERVICES) and sd["port"] == METRICS_PORT


def test_alert_rules_name_exported_metrics():
    doc = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    known = metric_names()
    alerts = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("info", "warning", "critical")
            assert rule["annotations"]["summary"]
            used = set(METRIC_RE.findall(rule["expr"]))
            assert used, f"{rule['alert']} names no XGet metric"
            assert used <= known, f"{rule['alert']}: unknown {used - known}"
            alerts[rule["alert"]] = rule["expr"]
    # What the issue asks to alert on.
    assert any("xget_accounts" in e and "active" in e for e in alerts.values())
    assert any("xget_account_pool_health" in e for e in alerts.values())
    assert any("xget_x_requests_total" in e for e in alerts.values())  # error rate
    assert any("xget_consumer_lag" in e and "deriv" in e for e in alerts.values())  # growing
    assert any("xget_records_failed_total" in e and "increase" in e for e in alerts.values())


def test_every_alert_says_what_to_do_and_the_evaluator_knows_the_designs_conditions():
    """Each rule names an action; the design's conditions (and lag, dead letters, stuck
    tasks) are rules under the same names as the gateway's own evaluator uses."""
    from libs.alerts import Facts, evaluate
    from libs.settings import Settings

    doc = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    for name, rule in rules.items():
        assert len(rule["annotations"].get("action", "")) > 20, f"{name} says what to do"
    # Everything the evaluator can raise, with every condition provoked at once.
    s = Settings(_env_file=None, alert_min_usable_proxies=1)
    facts = Facts(
        now=0.0,
        accounts=[],
        proxies=[],
        x_requests=100,
        x_errors=90,
        proxy_requests=100,
        proxy_errors=90,
        lags={("parser", "raw-pages"): 10**6},
        dead_letters=1,
        stuck_tasks={"t": 10**6},
    )
    raised = {f.name for f in evaluate(s, facts)}
    assert raised <= set(rules), raised - set(rules)
    assert {"XGetAccountShortage", "XGetXErrorRate", "XGetProxyErrorRate"} <= raised
    assert {"XGetConsumerLag", "XGetDeadLetters", "XGetTaskStuck"} <= raised
    for name in ("XGetHealthyAccountsLow", "XGetHealthyProxiesLow", "XGetProxyShortage"):
        assert name in rules


def test_alertmanager_routes_every_alert_to_the_webhook_and_prometheus_sends_to_it():
    am = yaml.safe_load((INFRA / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in am["receivers"]}
    assert am["route"]["receiver"] == "webhook"
    (hook,) = receivers["webhook"]["webhook_configs"]
    assert hook["send_resolved"] and hook["url"] == "ALERT_WEBHOOK_URL"  # set from the env
    prom = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    svc = compose()["services"]["alertmanager"]
    assert "XGET_ALERT_WEBHOOK_URL" in svc["environment"]
    assert any("alertmanager.yml" in v for v in svc["volumes"])


def test_dashboard_panels_name_exported_metrics():
    dash = json.loads((INFRA / "grafana" / "dashboards" / "xget.json").read_text())
    known = metric_names()
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("throughput", "lag", "accounts", "errors", "webhook"):
        assert word in titles
    for p in dash["panels"]:
        for t in p["targets"]:
            used = set(METRIC_RE.findall(t["expr"]))
            assert used and used <= known, f"{p['title']}: {used - known}"


def test_metric_name_check_catches_a_typo():
    assert "xget_records_in_total" in metric_names()
    assert "xget_record_in_total" not in metric_names()
