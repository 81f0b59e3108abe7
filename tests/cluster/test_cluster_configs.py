"""Checks for the cluster configs in cluster/: AWS launcher, KubeRay, SLURM, and their README."""

from __future__ import annotations

import ast
import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config
from ray.autoscaler._private.util import validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AWS = CLUSTER / "ray-cluster-aws-gpu.yaml"
PUBLIC_RAY_PORTS = (8265, 6379, 10001)
SECRET = "lottery-ray-auth"
MANIFESTS = {"RayCluster": "kuberay-raycluster.yaml", "RayJob": "kuberay-rayjob.yaml"}

# KubeRay v1 API field names (ray-operator/apis/ray/v1, *_types.go), the fields common to v1.1+.
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                   "autoscalerOptions", "headServiceAnnotations", "suspend"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts",
                "rayStartParams", "template", "scaleStrategy"}
AUTOSCALER = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
              "securityContext", "idleTimeoutSeconds", "upscalingMode"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
               "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy",
               "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
               "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
               "shutdownAfterJobFinishes", "suspend", "schedule"}
# Kubernetes core/v1 PodSpec and Container field names.
POD_SPEC = {"activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
            "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
            "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets",
            "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy",
            "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
            "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
            "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN",
            "shareProcessNamespace", "subdomain", "terminationGracePeriodSeconds", "tolerations",
            "topologySpreadConstraints", "volumes"}
CONTAINER = {"args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
             "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
             "restartPolicy", "securityContext", "startupProbe", "stdin", "stdinOnce",
             "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices",
             "volumeMounts", "workingDir"}


def load_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


def one_doc(name: str, kind: str) -> dict[str, Any]:
    docs = [d for d in load_docs(name) if d.get("kind") == kind]
    assert len(docs) == 1, f"{name}: expected one {kind}, got {len(docs)}"
    return docs[0]


def aws_config() -> dict[str, Any]:
    return yaml.safe_load(AWS.read_text())


def cluster_specs() -> dict[str, dict[str, Any]]:
    return {
        "RayCluster": one_doc("kuberay-raycluster.yaml", "RayCluster")["spec"],
        "RayJob": one_doc("kuberay-rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"],
    }


def ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def pyproject_deps_without_ray() -> set[str]:
    """The base dependencies and the ``train`` extra (what a trial needs), less ray."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [*project["dependencies"], *project["optional-dependencies"]["train"]]
    return {d.replace(" ", "") for d in deps if re.split(r"[<>=!~\[; ]", d)[0] != "ray"}


def ray_default_ssh_rules() -> list[dict[str, Any]]:
    """The ingress rules Ray's AWS provider always adds, read from the installed Ray source."""
    source = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "_create_default_ssh_inbound_rules":
            ret = next(n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value)
            assert ret.value is not None
            return list(ast.literal_eval(ret.value))
    raise AssertionError("Ray no longer has _create_default_ssh_inbound_rules; recheck the SG")


# ---------------------------------------------------------------- AWS cluster launcher


def test_aws_config_passes_rays_own_validator() -> None:
    validate_config(prepare_config(aws_config()))


def test_aws_validator_rejects_a_misspelled_field() -> None:
    broken = aws_config()
    broken["available_node_types"]["ray.worker.gpu"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_aws_start_commands_bind_dashboard_to_localhost_with_token_auth(key: str) -> None:
    config = aws_config()
    starts = [c for c in config[key] if "ray start" in c]
    assert len(starts) == 1
    assert "--dashboard-host=127.0.0.1" in starts[0]
    assert "0.0.0.0" not in starts[0]
    assert re.search(r"export RAY_AUTH_MODE=token\b", starts[0])
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", starts[0])
    assert token_path, "no token file: the node would look for ~/.ray/auth_token"
    assert Path(token_path.group(1)).parent.as_posix() in config["file_mounts"]


def test_aws_security_group_opens_only_ssh_to_outside() -> None:
    config = aws_config()
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"], "rules would not be visible"
    rules = ray_default_ssh_rules() + config["provider"]["security_group"]["IpPermissions"]
    for rule in rules:
        if not (rule.get("IpRanges") or rule.get("Ipv6Ranges")):
            continue  # source is a security group: cluster nodes only
        for port in PUBLIC_RAY_PORTS:
            covered = rule["IpProtocol"] == "-1" or rule["FromPort"] <= port <= rule["ToPort"]
            assert not covered, f"port {port} open to outside: {rule}"
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
    options = " ".join(config["docker"]["run_options"])
    assert not re.search(r"(^|\s)(-p|--publish)\b", options)


def test_aws_nodes_do_not_fall_back_to_rays_default_ami() -> None:
    # Ray's default AMI (an Ubuntu 18.04 DLAMI) predates the drivers CUDA 12 needs.
    for t in aws_config()["available_node_types"].values():
        assert t["node_config"]["ImageId"].startswith(("ami-", "resolve:ssm:/aws/service/"))


def test_aws_gpu_workers_fit_fractional_gpu_trials() -> None:
    config = aws_config()
    types = config["available_node_types"]
    assert "GPU" not in types[config["head_node_type"]]["resources"]
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types, "no worker type has a GPU resource"
    for t in gpu_types:
        assert t["node_config"]["InstanceType"].startswith(("g5.", "g6.", "p3.", "p4", "p5."))
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]
        trials_per_node = min(t["resources"]["CPU"] / 1, t["resources"]["GPU"] / 0.25)
        assert trials_per_node >= 1, "a {cpu: 1, gpu: 0.25} trial does not fit"


def test_aws_installs_this_repo_and_the_installed_ray_version() -> None:
    config = aws_config()
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")
    setup = " ".join(config["setup_commands"])
    assert f'"ray[default,tune]=={ray.__version__}"' in setup
    repo_mounts = [r for r, local in config["file_mounts"].items() if local == "."]
    assert len(repo_mounts) == 1 and f'pip install -q "{repo_mounts[0]}[train]"' in setup
    assert (REPO / "pyproject.toml").is_file()


# ---------------------------------------------------------------- KubeRay


def unknown_keys(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{k}" for k in obj if k not in allowed]


def unknown_in_cluster_spec(spec: dict[str, Any], where: str) -> list[str]:
    bad = unknown_keys(spec, RAYCLUSTER_SPEC, where)
    bad += unknown_keys(spec.get("autoscalerOptions", {}), AUTOSCALER, f"{where}.autoscaler")
    groups = [(spec["headGroupSpec"], HEAD_GROUP, "head")]
    groups += [(g, WORKER_GROUP, f"worker[{i}]") for i, g in enumerate(spec["workerGroupSpecs"])]
    for group, allowed, name in groups:
        bad += unknown_keys(group, allowed, f"{where}.{name}")
        bad += unknown_in_pod(group["template"]["spec"], f"{where}.{name}.pod")
    return bad


def unknown_in_pod(pod: dict[str, Any], where: str) -> list[str]:
    bad = unknown_keys(pod, POD_SPEC, where)
    for c in pod["containers"]:
        bad += unknown_keys(c, CONTAINER, f"{where}.{c['name']}")
    return bad


def test_kuberay_manifests_use_kuberay_v1_field_names() -> None:
    for kind, name in MANIFESTS.items():
        doc = one_doc(name, kind)
        assert doc["apiVersion"] == "ray.io/v1"
        assert doc["metadata"]["name"]
    job = one_doc("kuberay-rayjob.yaml", "RayJob")["spec"]
    bad = unknown_keys(job, RAYJOB_SPEC, "RayJob.spec")
    bad += unknown_in_pod(job["submitterPodTemplate"]["spec"], "RayJob.submitter")
    for kind, spec in cluster_specs().items():
        bad += unknown_in_cluster_spec(spec, kind)
    assert bad == []
    assert job["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}


def test_kuberay_field_check_catches_a_typo() -> None:
    spec = copy.deepcopy(cluster_specs()["RayCluster"])
    spec["workerGroupSpecs"][0]["maxReplica"] = 4
    assert unknown_in_cluster_spec(spec, "x") == ["x.worker[0].maxReplica"]


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_kuberay_gpu_worker_group_and_ray_version(kind: str) -> None:
    spec = cluster_specs()[kind]
    assert spec["rayVersion"] == ray.__version__
    for c in ray_containers(spec):
        assert c["image"].startswith(f"rayproject/ray:{ray.__version__}-"), c["image"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    gpu_groups = 0
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpu_groups += int(limits.get("nvidia.com/gpu", 0)) >= 1
    assert gpu_groups >= 1


def test_kuberay_exposes_nothing_outside_the_cluster() -> None:
    docs = load_docs("kuberay-raycluster.yaml") + load_docs("kuberay-rayjob.yaml")
    for doc in docs:
        assert doc["kind"] not in {"Ingress", "Route", "Secret"}, doc["kind"]
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP"
    for spec in cluster_specs().values():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
        assert not head.get("enableIngress", False)


def assert_token_from_secret(env: list[dict[str, Any]], where: str) -> None:
    by_name = {e["name"]: e for e in env}
    assert by_name["RAY_AUTH_MODE"].get("value") == "token", where
    token = by_name["RAY_AUTH_TOKEN"]
    assert "value" not in token, f"{where}: token inline"
    assert token["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "auth_token"}, where


def test_kuberay_every_ray_process_uses_the_token_secret() -> None:
    for kind, spec in cluster_specs().items():
        for c in ray_containers(spec):
            assert_token_from_secret(c["env"], f"{kind}/{c['name']}")
        assert_token_from_secret(spec["autoscalerOptions"]["env"], f"{kind}/autoscaler")
    submitter = one_doc("kuberay-rayjob.yaml", "RayJob")["spec"]["submitterPodTemplate"]
    assert_token_from_secret(submitter["spec"]["containers"][0]["env"], "submitter")


def test_rayjob_runs_the_sweep_on_the_same_cluster_and_cleans_up() -> None:
    job = one_doc("kuberay-rayjob.yaml", "RayJob")["spec"]
    assert job["entrypoint"].startswith("python -m sweeps run sweeps/configs/")
    assert re.search(r"--storage (s3|gs)://\S+", job["entrypoint"])
    assert job["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(job["runtimeEnvYAML"])
    assert runtime_env["working_dir"].endswith(".zip")
    assert set(runtime_env["pip"]) == pyproject_deps_without_ray()
    assert job["rayClusterSpec"] == cluster_specs()["RayCluster"]


# ---------------------------------------------------------------- README


def readme() -> str:
    return (CLUSTER / "README.md").read_text()


@pytest.mark.parametrize("command", [
    "ray up -y cluster/ray-cluster-aws-gpu.yaml", "ray attach cluster/ray-cluster-aws-gpu.yaml",
    "ray dashboard cluster/ray-cluster-aws-gpu.yaml",
    "ray job submit --address http://127.0.0.1:8265 --working-dir .",
    "python -m sweeps run sweeps/configs/fashion_mnist_lenet.yaml",
    "kubectl apply -f cluster/kuberay-raycluster.yaml",
    "kubectl apply -f cluster/kuberay-rayjob.yaml", "sbatch --nodes=3 cluster/slurm-ray.sbatch",
    "ray job logs", "lottery status NAME --storage", "lottery report NAME --storage",
    "ssh -J <login-node> -L 8265:127.0.0.1:8265", "export RAY_AUTH_MODE=token",
    "ray get-auth-token --generate", '--headers \'{"Authorization": "Bearer <token>"}\'',
    "weights_only=True",
])
def test_readme_gives_the_command(command: str) -> None:
    assert command in readme()


def test_readme_matches_the_configs() -> None:
    text = readme()
    cluster = one_doc(MANIFESTS["RayCluster"], "RayCluster")["metadata"]["name"]
    assert f"kubectl port-forward svc/{cluster}-head-svc 8265:8265" in text
    # a RayJob's head Service is named after its generated cluster before KubeRay 1.5
    job = one_doc(MANIFESTS["RayJob"], "RayJob")["metadata"]["name"]
    assert f'kubectl port-forward "svc/$(kubectl get rayjob {job} \\\n' \
           f"    -o jsonpath='{{.status.rayClusterName}}')-head-svc\" 8265:8265" in text
    for path in set(re.findall(r"\bcluster/[\w.-]+\.(?:yaml|sbatch|md)", text)):
        assert (REPO / path).is_file(), path
    configs = "".join(p.read_text() for p in CLUSTER.iterdir() if p.suffix != ".md")
    for placeholder in set(re.findall(r"YOUR_[A-Z_]+", configs)):
        assert placeholder in text, placeholder
    runtime_env_json = re.search(r"--runtime-env-json '(\{.*?\})'", text)
    assert runtime_env_json, "README: no --runtime-env-json for the RayCluster submit"
    assert set(json.loads(runtime_env_json.group(1))["pip"]) == pyproject_deps_without_ray()
    for line in re.findall(r"authorize-security-group-ingress[^\n]*\n[^\n]*", text):
        assert "--cidr" not in line or "--port 22 " in line, line


def test_no_config_carries_a_token_or_key() -> None:
    for path in CLUSTER.iterdir():
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE", text)
        assert not re.search(r"RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[0-9a-f]{16,}", text), path.name


def test_every_gpu_spec_shares_a_gpu_worker_four_ways() -> None:
    """The shipped specs that ask for a GPU fill the GPU workers of the cluster configs as the
    configs say (four trials per node), not one CPU-bound trial on a quarter of the GPU."""
    from sweeps import spec as spec_module

    config = aws_config()
    workers = [t["resources"] for t in config["available_node_types"].values()
               if t["resources"].get("GPU", 0) >= 1]
    specs = [spec_module.load(p) for p in sorted((REPO / "sweeps" / "configs").rglob("*.yaml"))]
    gpu_specs = [s for s in specs if s.resources.gpu > 0]
    assert gpu_specs, "no shipped spec asks for a GPU"
    for s in gpu_specs:
        for w in workers:
            per_node = min(w["CPU"] // s.resources.cpu, w["GPU"] // s.resources.gpu)
            assert per_node >= 4, (s.name, s.resources, w)
