"""`helm install` (the real helm 3 and helm 4 binaries) against a recording fake API server
(tests/ops/fake_kube.py): the first install completes, the migrate Job finds everything its
pod needs, and the hook resources are created before it and before the workloads. The same
fake makes a chart whose SecretProviderClass is an ordinary resource time out, as a real
cluster did (helm 3: "timed out waiting for the condition"; helm 4, which waits with a
status watcher fed by a streaming list: "context deadline exceeded")."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.fake_kube import FakeKube

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "eats"
TOOLS = ROOT / ".venv-tools" / "bin"
# helm 3 (`helm`) and helm 4 (`helm4`), both from deploy/tools/binaries.lock
HELMS = pytest.mark.parametrize("helm", ["helm", "helm4"])


def install(
    helm: str, kube: FakeKube, chart: Path, tmp: Path, timeout: str
) -> subprocess.CompletedProcess:
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(kube.kubeconfig())
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
    }
    return subprocess.run(
        [
            str(TOOLS / helm),
            "install",
            "eats",
            str(chart),
            "--namespace",
            "payments",
            "--wait-for-jobs",
            "--timeout",
            timeout,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@HELMS
def test_the_first_install_completes_with_the_hooks_in_order(helm, tmp_path):
    with FakeKube() as kube:
        # when
        result = install(helm, kube, CHART, tmp_path, "60s")

    # then: deployed, the Job ran (everything it mounts existed), then the workloads
    assert result.returncode == 0, result.stderr
    assert "STATUS: deployed" in result.stdout
    assert kube.release_status == {"sh.helm.release.v1.eats.v1": "deployed"}
    assert kube.job_failures == []
    created = [resource for resource, _name in kube.created() if resource != "secrets"]
    assert created[:4] == ["serviceaccounts", "configmaps", "secretproviderclasses", "jobs"]
    assert created.index("jobs") < created.index("deployments")
    assert sorted(created[4:]) == [
        "deployments",
        "deployments",
        "deployments",
        "networkpolicies",
        "networkpolicies",
        "networkpolicies",
        "poddisruptionbudgets",
        "poddisruptionbudgets",
        "services",
    ]
    # the hook Job was deleted after it succeeded (hook-delete-policy: hook-succeeded)
    assert ("delete", "jobs", "eats-eats-payments-migrate-1") in kube.log


@HELMS
def test_a_secret_provider_class_that_is_not_a_hook_never_lets_the_job_run(helm, tmp_path):
    # given: the chart as it was, with the SecretProviderClass an ordinary resource
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    spc = chart / "templates" / "secretproviderclass.yaml"
    spc.write_text(re.sub(r'\n    "helm\.sh/hook[^\n]*', "", spc.read_text()))

    with FakeKube() as kube:
        # when
        result = install(helm, kube, chart, tmp_path, "8s")

    # then: the Job waits for a class that is only created after the hooks: timed out
    assert result.returncode != 0
    assert "failed pre-install" in result.stderr
    assert {"helm": "timed out waiting for the condition", "helm4": "context deadline exceeded"}[
        helm
    ] in result.stderr
    assert kube.job_failures == [
        "eats-eats-payments-migrate-1: missing secretproviderclass/eats-eats-payments-aws"
    ]
    assert kube.release_status["sh.helm.release.v1.eats.v1"] == "failed"
