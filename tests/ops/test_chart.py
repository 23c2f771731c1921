"""The Helm chart, rendered by the real helm binary (installed by `make install-tools` from
deploy/tools/binaries.lock): hook order, probes that Django admits, release-scoped selectors,
pod hardening."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "eats"
PRODUCTION_VALUES = ROOT / "deploy" / "helm" / "ci" / "production-values.yaml"
HELM = os.environ.get("HELM", str(ROOT / ".venv-tools" / "bin" / "helm"))  # helm 3
HELM4 = os.environ.get("HELM4", str(ROOT / ".venv-tools" / "bin" / "helm4"))


def render(release: str = "eats", *args: str, helm: str = HELM) -> list[dict]:
    assert Path(helm).exists(), f"{helm} missing: run `make install-tools`"
    result = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", "payments", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def hook(doc: dict) -> tuple[set[str], int]:
    annotations = doc["metadata"].get("annotations") or {}
    events = set(filter(None, annotations.get("helm.sh/hook", "").split(",")))
    return events, int(annotations.get("helm.sh/hook-weight", "0"))


@pytest.fixture(
    scope="module",
    params=[
        ("helm3", "default"),
        ("helm3", "production"),
        ("helm4", "default"),
        ("helm4", "production"),
    ],
)
def docs(request) -> list[dict]:
    helm = HELM if request.param[0] == "helm3" else HELM4
    if request.param[1] == "default":
        return render("eats", helm=helm)
    return render("eats", "-f", str(PRODUCTION_VALUES), helm=helm)


def test_everything_the_migrate_job_needs_is_a_hook_created_before_it(docs):
    # given
    job = by_kind(docs, "Job")[0]
    job_events, job_weight = hook(job)
    spc = by_kind(docs, "SecretProviderClass")[0]
    sa = by_kind(docs, "ServiceAccount")[0]
    config = by_kind(docs, "ConfigMap")[0]
    pod = job["spec"]["template"]["spec"]

    # then: the Job is a pre-install/pre-upgrade hook...
    assert {"pre-install", "pre-upgrade"} <= job_events
    # ...and what it mounts, runs as and reads are hooks of the same events with lower weights
    # (ordinary resources are created only after the pre-install hooks have finished)
    for needed in (spc, sa, config):
        events, weight = hook(needed)
        assert {"pre-install", "pre-upgrade"} <= events, needed["kind"]
        assert weight < job_weight, needed["kind"]
        # hooks are not in the release manifest: a rollback must re-create them as they were
        assert "pre-rollback" in events, needed["kind"]
    # migrations never run backwards by themselves
    assert "pre-rollback" not in job_events
    csi = next(v["csi"] for v in pod["volumes"] if "csi" in v)
    assert csi["volumeAttributes"]["secretProviderClass"] == spc["metadata"]["name"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    env_from = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert env_from == config["metadata"]["name"]
    # migrations run as the owner role
    assert {"name": "DB_ROLE", "value": "owner"} in pod["containers"][0]["env"]
    assert "DATABASE_OWNER_URL" in spc["spec"]["parameters"]["objects"]


def test_web_probes_carry_a_host_that_django_admits(docs):
    # given
    web = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-web"))
    container = web["spec"]["template"]["spec"]["containers"][0]
    config = by_kind(docs, "ConfigMap")[0]["data"]
    allowed = config["ALLOWED_HOSTS"].split(",")

    # then: shallow liveness, deep readiness, both with an allowed Host header
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    hosts = {
        h["value"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe")
        for h in container[probe]["httpGet"]["httpHeaders"]
        if h["name"] == "Host"
    }
    assert len(hosts) == 1
    host = hosts.pop()
    assert host in allowed
    # and Django, configured as the pod is, answers the probe (and refuses the pod IP)
    with override_settings(ALLOWED_HOSTS=allowed):
        assert Client().get("/healthz", HTTP_HOST=host).status_code == 200
        assert Client().get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_selectors_are_scoped_to_the_release(docs):
    other = render("other")
    for doc in by_kind(docs, "Deployment") + by_kind(docs, "PodDisruptionBudget"):
        assert doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "eats"
    service = by_kind(docs, "Service")[0]
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "eats"
    assert by_kind(other, "Service")[0]["spec"]["selector"]["app.kubernetes.io/instance"] == "other"
    for doc in by_kind(docs, "Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in doc["spec"]["selector"]["matchLabels"].items())


def test_every_pod_is_hardened(docs):
    pods = [
        d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment") + by_kind(docs, "Job")
    ]
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["limits"]["memory"]
            assert container["resources"]["requests"]["cpu"]
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_workers_outlive_their_longest_task_and_beat_is_a_singleton(docs):
    deployments = {d["metadata"]["name"].rsplit("-", 1)[1]: d for d in by_kind(docs, "Deployment")}
    worker = deployments["worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 300
    assert worker["containers"][0]["livenessProbe"]["exec"]["command"][:3] == [
        "python",
        "-m",
        "ops.liveness",
    ]
    # the worker serves its own metrics, and only the monitoring namespace may scrape them
    container = worker["containers"][0]
    assert {"name": "WORKER_METRICS_BIND", "value": "0.0.0.0:9808"} in container["env"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    scrape = policies["eats-eats-payments-worker-metrics"]
    assert scrape["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert scrape["ingress"] == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
                for ns in ["monitoring"]
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
    ]
    beat = deployments["beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    pdbs = {d["metadata"]["name"] for d in by_kind(docs, "PodDisruptionBudget")}
    assert "eats-eats-payments-web" in pdbs


def test_pods_restart_when_settings_or_secrets_change():
    before = render("eats")
    after = render("eats", "--set", "env.LOG_LEVEL=DEBUG")
    rotated = render("eats", "--set", "secrets.awsSecretName=prod/eats-payments-v2")

    def checksums(docs):
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]
            for d in by_kind(docs, "Deployment")
        }

    for name, annotations in checksums(before).items():
        assert checksums(after)[name]["checksum/config"] != annotations["checksum/config"]
        assert checksums(rotated)[name]["checksum/secrets"] != annotations["checksum/secrets"]
    for d in by_kind(before, "Deployment"):
        assert d["metadata"]["annotations"]["secret.reloader.stakater.com/reload"] == (
            "eats-eats-payments-secrets"
        )


def test_the_irsa_role_is_annotated_on_the_service_account():
    sa = by_kind(render("eats", "-f", str(PRODUCTION_VALUES)), "ServiceAccount")[0]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        "arn:aws:iam::123456789012:role/eats-payments-prod"
    )


@pytest.mark.parametrize(
    "override",
    [
        "web.replica=3",
        "env.SECRET_KEY=oops",
        "worker.terminationGracePeriodSeconds=30",
        "image.digest=latest",
    ],
)
def test_the_values_schema_rejects_typos_and_unsafe_values(override):
    result = subprocess.run(
        [HELM, "template", "eats", str(CHART), "--set", override],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_the_web_and_the_workers_share_one_drain_slot_per_celery_process(docs):
    # given: the workers' processes as rendered
    worker = next(
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-worker")
    )
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    processes = worker["spec"]["replicas"] * int(command[command.index("--concurrency") + 1])
    config = by_kind(docs, "ConfigMap")[0]["data"]

    # then: every pod reads the number of drain slots from the one ConfigMap
    assert config["STRIPE_EVENTS_DRAINS"] == str(processes)


def test_an_explicit_drain_count_wins() -> None:
    docs = render("eats", "--set-string", "env.STRIPE_EVENTS_DRAINS=3")
    assert by_kind(docs, "ConfigMap")[0]["data"]["STRIPE_EVENTS_DRAINS"] == "3"
