"""The image recipe (Dockerfile) and the Kubernetes example (examples/kubernetes/) hold together.

Nothing here starts a container or a cluster (none is available offline): the manifests are read as
Kubernetes would read them and cross-checked (names, selectors, ports, secret and config keys, mount
paths), the scenario is loaded by the harness from the very layout the master pod mounts, the
commands are parsed by the harness's own CLI parser, and the Dockerfile is read for what the
manifests rely on (the load extra, the entrypoint, the uid, the reports volume).
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
import tomllib
from typing import Any

import yaml

from harness.cli import _parser
from tests.conftest import REGISTRY, ROOT, harness_cmd

EXAMPLE = ROOT / "examples" / "kubernetes"
SCENARIO = ROOT / "scenarios" / "regional-outage.yaml"
# Applied by hand after the run (it copies the reports out), so not in kustomization.yaml.
BY_HAND = {"reports-reader.yaml"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text(encoding="utf-8")) if d is not None]


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text(encoding="utf-8"))


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object the kustomization applies, by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in _kustomization()["resources"]:
        for doc in _docs(name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{name}: {key} defined twice"
            found[key] = doc
    return found


def _one(kind: str) -> dict[str, Any]:
    objects = [doc for (k, _), doc in _resources().items() if k == kind]
    assert len(objects) == 1, f"expected one {kind}, found {len(objects)}"
    return objects[0]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _master_args() -> list[str]:
    return [str(a) for a in _container(_one("Job"))["args"]]


def _worker_args() -> list[str]:
    return [str(a) for a in _container(_one("Deployment"))["args"]]


def _option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _configmap_mounts(pod: dict[str, Any]) -> dict[str, str]:
    """Where each ConfigMap key appears in the container's filesystem: key -> absolute path."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    paths: dict[str, str] = {}
    for mount in pod["spec"]["containers"][0]["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        for item in source["items"]:
            paths[item["key"]] = posixpath.join(mount["mountPath"], item["path"])
    return paths


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def _instruction(word: str) -> list[str]:
    return [rest for w, rest in _dockerfile() if w == word]


# ---- the manifests as Kubernetes reads them ----

def test_every_manifest_parses_and_names_itself():
    files = sorted(p.name for p in EXAMPLE.glob("*.yaml"))
    assert set(_kustomization()["resources"]) | BY_HAND | {"kustomization.yaml"} == set(files)
    for name in files:
        if name == "kustomization.yaml":
            continue
        docs = _docs(name)
        assert docs, f"{name} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), name


def test_the_kinds_of_a_master_and_workers_run():
    kinds = sorted(kind for kind, _ in _resources())
    assert kinds == ["ConfigMap", "Deployment", "Job", "Namespace", "PersistentVolumeClaim", "Secret", "Service"]
    namespace = _one("Namespace")["metadata"]["name"]
    assert _kustomization()["namespace"] == namespace
    assert _docs("reports-reader.yaml")[0]["metadata"]["namespace"] == namespace


def test_a_verdict_is_not_retried():
    job = _one("Job")["spec"]
    assert job["backoffLimit"] == 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_workers_reach_the_master_through_the_service():
    service = _one("Service")
    host, _, port = _option(_worker_args(), "--master").rpartition(":")
    assert host == service["metadata"]["name"]
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    bind_host, _, bind_port = _option(_master_args(), "--master-bind").rpartition(":")
    assert bind_host == "0.0.0.0", "a loopback bind cannot be reached from another pod"
    assert int(bind_port) == int(port)
    assert int(port) in [p["containerPort"] for p in _container(_one("Job"))["ports"]]
    # Headless: the name resolves to the master pod itself, so the embedded gateway's port (picked at
    # start-up) is reachable too, not only the ports listed.
    assert service["spec"]["clusterIP"] == "None"


def test_the_service_selects_the_master_pod_only():
    selector = _one("Service")["spec"]["selector"]
    master_labels = _one("Job")["spec"]["template"]["metadata"]["labels"]
    worker_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= master_labels.items()
    assert not selector.items() <= worker_labels.items()
    deployment = _one("Deployment")["spec"]
    assert deployment["selector"]["matchLabels"].items() <= worker_labels.items()


def test_as_many_workers_as_the_master_expects():
    assert _one("Deployment")["spec"]["replicas"] == int(_option(_master_args(), "--workers-expected"))


def test_master_and_workers_read_the_token_from_the_secret():
    secret = _one("Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for workload in (_one("Job"), _one("Deployment")):
        env = {e["name"]: e for e in _container(workload)["env"]}
        ref = env["HARNESS_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys
    assert "secrets.token_urlsafe(32)" in (EXAMPLE / "secret.yaml").read_text(encoding="utf-8")


def test_reports_go_to_the_claim_the_reader_mounts():
    job_pod = _one("Job")["spec"]["template"]
    report_dir = _option(_master_args(), "--report-dir")
    mounts = {m["mountPath"]: m["name"] for m in job_pod["spec"]["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in job_pod["spec"]["volumes"]}
    claim = volumes[mounts[report_dir]]["persistentVolumeClaim"]["claimName"]
    assert claim == _one("PersistentVolumeClaim")["metadata"]["name"]
    reader = _docs("reports-reader.yaml")[0]
    assert [v["persistentVolumeClaim"]["claimName"] for v in reader["spec"]["volumes"]] == [claim]


# ---- the scenario the master mounts ----

def test_the_configmap_is_the_shipped_scenario_and_registry_byte_for_byte():
    data = _one("ConfigMap")["data"]
    assert data["regional-outage.yaml"] == SCENARIO.read_text(encoding="utf-8")
    assert data["fallback-registry.yaml"] == REGISTRY.read_text(encoding="utf-8")


def test_the_mounted_scenario_finds_its_registry():
    pod = _one("Job")["spec"]["template"]
    data = _one("ConfigMap")["data"]
    paths = _configmap_mounts(pod)
    assert set(paths) <= set(data), "a mounted key the ConfigMap lacks"
    scenario_path = _master_args()[1]
    assert paths["regional-outage.yaml"] == scenario_path
    reference = yaml.safe_load(data["regional-outage.yaml"])["policy"]["file"]
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(scenario_path), reference))
    assert paths["fallback-registry.yaml"] == resolved


def test_the_harness_loads_the_scenario_from_the_mount_layout(tmp_path):
    """The pod's filesystem rebuilt under tmp_path from the manifests: the harness itself must load the
    scenario there, registry and all (a wrong relative path is exit 2 with 'registry')."""
    data = _one("ConfigMap")["data"]
    for key, path in _configmap_mounts(_one("Job")["spec"]["template"]).items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[key], encoding="utf-8")
    scenario = tmp_path / _master_args()[1].lstrip("/")
    done = harness_cmd("validate", str(scenario), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "regional-outage" in done.stdout


# ---- the commands, as the harness parses them ----

def test_the_master_command_parses_with_the_harness_parser():
    args = _master_args()
    parsed = _parser().parse_args(args)
    assert parsed.command == "load"
    assert parsed.workers_expected == _one("Deployment")["spec"]["replicas"]
    assert parsed.master_bind == _option(args, "--master-bind")
    assert str(parsed.report_dir) == "/reports"
    assert str(parsed.scenario) == _configmap_mounts(_one("Job")["spec"]["template"])["regional-outage.yaml"]


def test_the_worker_command_parses_with_the_harness_parser():
    parsed = _parser().parse_args(_worker_args())
    assert parsed.command == "worker"
    assert parsed.master == "harness-master:5557"


# ---- the image recipe ----

def test_the_image_installs_the_load_extra_and_runs_harness():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(req.startswith("locust") for req in extras["optional-dependencies"]["load"])
    assert extras["scripts"]["harness"] == "harness.cli:entry"
    froms = _instruction("FROM")
    assert len(froms) == 1 and froms[0].startswith("python:3.11-slim")
    installs = [shlex.split(r) for r in _instruction("RUN") if "pip install" in r]
    assert [".[load]"] == [a for cmd in installs for a in cmd if a.startswith(".")]
    assert _instruction("ENTRYPOINT") == ['["harness"]']
    assert _instruction("WORKDIR")


def test_the_image_runs_as_the_uid_the_pods_require():
    user = _instruction("USER")[-1].split(":")[0]
    assert user not in {"0", "root"}
    pods = [_one("Job")["spec"]["template"]["spec"], _one("Deployment")["spec"]["template"]["spec"],
            _docs("reports-reader.yaml")[0]["spec"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == user


def test_reports_are_a_volume_of_the_image():
    assert any("/reports" in v for v in _instruction("VOLUME"))


def test_the_build_context_keeps_what_the_dockerfile_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    sources = [s for rest in _instruction("COPY") for s in shlex.split(rest)[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "README.md", "harness"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is in .dockerignore"
    # The scenarios copied into the image find the registry beside them, as in the repository.
    assert {"scenarios", "policy"} <= set(sources)
