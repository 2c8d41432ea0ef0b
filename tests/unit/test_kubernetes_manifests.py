"""deploy/kubernetes: both overlays render, validate against the schemas, and say what we mean.

- kubeconform (built once from its Go module into ~/.cache/switchboard/bin) validates every
  resource strictly: the Kubernetes kinds against Kubernetes 1.33's JSON schemas from the
  `kubernetes-validate` package (made self-contained here, as kubeconform wants them), KEDA's
  ScaledObject and TriggerAuthentication against schemas converted from KEDA's own CRDs
  (deploy/kubernetes/schemas/keda.sh);
- Strimzi's KafkaTopic and KafkaUser and CloudNativePG's Cluster, for which no JSON schema can be
  fetched here, are validated by their CRDs' schemas as compiled into the @kubernetes-models npm
  packages (deploy/kubernetes/schemas/crs, `npm ci` once into the same cache);
- then what no schema says: probes on /healthz and /readyz, resources, non-root, a PDB and lag
  scaling per service (not the router), the topics of shared/contracts/topics.py with three
  replicas and min.insync.replicas=2, secrets only by reference, the migration Job, and the
  Containerfile's pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.contracts.topics import all_topics
from shared.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ("staging", "production")
KUBECONFORM = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"
KUBERNETES_VERSION = "1.33.0"
CACHE = Path(os.environ.get("SWITCHBOARD_TOOLS_CACHE", Path.home() / ".cache" / "switchboard"))
VALIDATED_BY_NPM = {"KafkaTopic", "KafkaUser", "Cluster"}
SERVICES = ("intake", "router", "sla", "escalation")


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    return done


@cache
def kubeconform() -> str:
    exe = CACHE / "bin" / "kubeconform-v0.7.0"
    if not exe.is_file():
        go = shutil.which("go")
        if go is None:
            pytest.fail("kubeconform needs Go to be built (`go install " + KUBECONFORM + "`)")
        build = CACHE / "bin" / "build"
        _run([go, "install", KUBECONFORM], env={**os.environ, "GOBIN": str(build)})
        (build / "kubeconform").replace(exe)
    return str(exe)


@cache
def rendered(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return _run([kubectl, "kustomize", str(K8S / "overlays" / overlay)]).stdout
    go = shutil.which("go")
    assert go, "rendering the overlays needs kubectl (kustomize built in) or Go"
    return _run([go, "run", "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0", "build",
                 str(K8S / "overlays" / overlay)], cwd=K8S).stdout


def resources(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def standalone_core_schemas(target: Path, kinds: set[tuple[str, str]]) -> Path:
    """kubernetes-validate's schemas refer to a shared `/api/_definitions.json`: copy the
    definitions into each schema kubeconform will open, so each file stands alone."""
    import kubernetes_validate

    source = (Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
              / f"v{KUBERNETES_VERSION}-local-strict")
    definitions = json.loads((source / "_definitions.json").read_text())
    defs = definitions.get("$defs") or definitions["definitions"]
    out = target / f"v{KUBERNETES_VERSION}-standalone-strict"
    out.mkdir(parents=True, exist_ok=True)
    for kind, suffix in kinds:
        name = f"{kind}{suffix}.json"
        schema = json.loads((source / name).read_text())
        text = re.sub(r'"/api/_definitions\.json#/(\$defs|definitions)/', '"#/$defs/',
                      json.dumps({**schema, "$defs": defs}))
        (out / name).write_text(text)
    return target


def run_kubeconform(core_schemas: Path, manifest: Path,
                    *more: str) -> subprocess.CompletedProcess[str]:
    """Strict, JSON report: Kubernetes' kinds from `core_schemas`, KEDA's from the vendored."""
    return subprocess.run(
        [kubeconform(), "-strict", "-summary", "-output", "json",
         "-kubernetes-version", KUBERNETES_VERSION,
         "-schema-location", (f"{core_schemas}/{{{{ .NormalizedKubernetesVersion }}}}-standalone"
                             "{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"),
         "-schema-location", (f"{K8S}/schemas/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_"
                             "{{ .ResourceAPIVersion }}.json"), *more, str(manifest)],
        capture_output=True, text=True, check=False)


def _suffix(api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    return "-" + "-".join(p for p in (group.split(".")[0], version) if p)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubeconform_validates_every_resource_strictly(overlay: str, tmp_path: Path) -> None:
    docs = resources(overlay)
    # Kubernetes' own kinds (no dot in the group): `deployment-apps-v1.json`, `configmap-v1.json`
    core = {(d["kind"].lower(), _suffix(d["apiVersion"])) for d in docs
            if "." not in d["apiVersion"].rpartition("/")[0]}
    schemas = standalone_core_schemas(tmp_path / "schemas", core)
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered(overlay))
    done = run_kubeconform(schemas, manifest, "-skip", ",".join(sorted(VALIDATED_BY_NPM)))
    report = json.loads(done.stdout)
    assert done.returncode == 0, json.dumps(report["resources"], indent=1)
    summary = report["summary"]
    skipped = sum(1 for d in docs if d["kind"] in VALIDATED_BY_NPM)
    assert summary["valid"] == len(docs) - skipped and summary["skipped"] == skipped, summary
    assert summary["invalid"] == 0 and summary["errors"] == 0


def test_kubeconform_rejects_what_the_schemas_forbid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
                   "spec: {replicas: two, selector: {}, template: {}, surprise: 1}\n"
                   "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: y}\n"
                   "spec: {scaleTargetRef: {name: x}, triggers: [{metadata: {}}]}\n")
    schemas = standalone_core_schemas(tmp_path / "schemas", {("deployment", "-apps-v1")})
    done = run_kubeconform(schemas, bad)
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert report["summary"]["invalid"] == 2, report


@cache
def crs_validator() -> Path:
    """deploy/kubernetes/schemas/crs installed once per lock (npm ci, into the cache)."""
    source = K8S / "schemas" / "crs"
    lock = (source / "package-lock.json").read_bytes()
    target = CACHE / "validate-crs" / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules").is_dir():
        npm = shutil.which("npm")
        assert npm, "validating the Strimzi and CloudNativePG resources needs Node.js and npm"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(source / name, target / name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target)
    shutil.copy(source / "validate.mjs", target / "validate.mjs")
    return target


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_and_cloudnativepg_resources_match_their_crds(overlay: str) -> None:
    docs = [d for d in resources(overlay) if d["kind"] in VALIDATED_BY_NPM]
    assert {d["kind"] for d in docs} == VALIDATED_BY_NPM
    where = crs_validator()
    done = subprocess.run(["node", "validate.mjs"], input=json.dumps(docs), cwd=where,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": valid") == len(docs)
    # And the validator does reject a wrong one.
    wrong = [{**docs[0], "spec": {**docs[0]["spec"], "partitions": "six"}}] \
        if docs[0]["kind"] == "KafkaTopic" else [{**docs[0], "spec": {"instances": "three"}}]
    done = subprocess.run(["node", "validate.mjs"], input=json.dumps(wrong), cwd=where,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "INVALID" in done.stdout


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_probes_resources_a_budget_and_lag_scaling(overlay: str) -> None:
    docs = resources(overlay)
    deployments = _by_kind(docs, "Deployment")
    budgets = _by_kind(docs, "PodDisruptionBudget")
    scaled = _by_kind(docs, "ScaledObject")
    assert set(deployments) == {f"switchboard-{s}" for s in SERVICES}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["command"] == ["python", "-m", f"services.{name.removeprefix('switchboard-')}"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in c["ports"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        env = {e["name"]: e for e in c["env"]}
        assert env["SERVICE_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.name"
        assert "sslmode=verify-full" in env["DATABASE_URL"]["value"]
        assert "secretKeyRef" in env["KAFKA_SASL_PASSWORD"]["valueFrom"]
        assert budgets[name]["spec"]["minAvailable"] == 1
        assert budgets[name]["spec"]["selector"]["matchLabels"] == \
            d["spec"]["selector"]["matchLabels"]
    # The router is one leader and its hot standby: two, never scaled on lag.
    assert deployments["switchboard-router"]["spec"]["replicas"] == 2
    assert set(scaled) == {"switchboard-intake", "switchboard-sla", "switchboard-escalation"}
    (config,) = _by_kind(docs, "ConfigMap").values()
    for name, s in scaled.items():
        assert s["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = s["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        # KEDA watches the brokers the services use.
        assert trigger["metadata"]["bootstrapServers"] == \
            config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert trigger["metadata"]["consumerGroup"] == name  # the runtime's group id
        assert s["spec"]["maxReplicaCount"] <= 6  # the topics' partitions
        assert trigger["authenticationRef"]["name"] in _by_kind(docs, "TriggerAuthentication")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_users_database_and_migrations(overlay: str) -> None:
    docs = resources(overlay)
    topics = {d["spec"]["topicName"]: d["spec"] for d in docs if d["kind"] == "KafkaTopic"}
    assert set(topics) == {s.name for s in all_topics()}
    for spec in all_topics():
        topic = topics[spec.name]
        assert topic["replicas"] == 3 and topic["config"]["min.insync.replicas"] == "2"
        assert (topic["config"].get("cleanup.policy") == "compact") == spec.compacted
    (pg,) = [d for d in docs if d["kind"] == "Cluster"]
    assert pg["spec"]["instances"] == 3
    assert pg["spec"]["postgresql"]["pg_hba"] == ["hostssl all all all scram-sha-256"]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["switchboard", "db", "migrate"]
    assert {e["name"] for e in c["env"]} >= {"DATABASE_ADMIN_URL", "DATABASE_URL"}
    # Secrets by reference only: none is defined here, and no value looks like one.
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = rendered(overlay)
    assert not re.search(r"(?i)password:\s*\S", text.replace("passwordSecret:", ""))
    assert {d["metadata"].get("namespace") for d in docs} == {
        "switchboard" if overlay == "production" else "switchboard-staging"}


def test_the_image_recipe_is_pinned_slim_non_root_and_installs_from_the_lock() -> None:
    text = (REPO_ROOT / "Containerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert bases and all(re.search(r"-slim-\w+@sha256:[0-9a-f]{64}$", b) for b in bases)
    assert re.findall(r"^FROM \$\{PYTHON_IMAGE\}", text, re.M)
    assert "--require-hashes -r requirements.lock" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
