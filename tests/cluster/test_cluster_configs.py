"""Checks for the cluster configs in cluster/: AWS launcher, KubeRay, SLURM, and their README."""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
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
SBATCH = CLUSTER / "slurm-ray.sbatch"
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


# ---------------------------------------------------------------- SLURM


def write_tools(bin_dir: Path, scripts: dict[str, str]) -> dict[str, str]:
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir.parent)}


def run_sbatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[001-003]",
             "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "2"}
    return subprocess.run(["bash", str(SBATCH), *args], env={**slurm, **env},
                          capture_output=True, text=True, timeout=30)


def test_sbatch_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)


def test_sbatch_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck binary not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_sbatch_never_runs_ray_stop() -> None:
    code = [line.split("#", 1)[0] for line in SBATCH.read_text().splitlines()]
    assert not [line for line in code if re.search(r"\bray\s+stop\b", line)]


@pytest.mark.parametrize("hosts", [["n1", "n2", "n3"], ["n1"]])
def test_sbatch_dry_run_prints_head_workers_sweep_and_scoped_stop(
    tmp_path: Path, hosts: list[str]
) -> None:
    poison = 'echo "$0 $*" >> "$HOME/called"; exit 97\n'
    tools = dict.fromkeys(["srun", "scontrol", "ray", "python", "hostname"], poison)
    env = write_tools(tmp_path / "bin", tools)
    env |= {"DRY_RUN": "1", "DRY_RUN_HOSTNAMES": " ".join(hosts), "RAY_HEAD_IP": "10.1.2.3"}
    result = run_sbatch(env, "spec.yaml", "/shared/store")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "called").exists(), "dry run executed a command"
    lines = result.stdout.splitlines()
    heads = [ln for ln in lines if "ray start --head" in ln]
    assert len(heads) == 1
    assert heads[0].startswith(f"+ srun --nodes=1 --ntasks=1 --cpus-per-task=2 -w {hosts[0]} ")
    for flag in ["--dashboard-host=127.0.0.1", "--port=6379", "--num-gpus=4", "--block"]:
        assert flag in heads[0].split(), flag
    workers = [ln for ln in lines if "ray start --address=10.1.2.3:6379" in ln]
    assert [ln.split(" -w ")[1].split()[0] for ln in workers] == hosts[1:]
    assert all("--num-gpus=4" in ln and "--block" in ln for ln in workers)
    sweep = "+ python -m sweeps run spec.yaml --storage /shared/store --address 10.1.2.3:6379"
    assert sweep in lines
    assert lines[-1].startswith("+ kill -TERM ") and len(lines[-1].split()) == 3 + len(hosts)
    assert not [ln for ln in lines if re.search(r"\bray\s+stop\b", ln)]


def test_sbatch_requires_spec_and_storage(tmp_path: Path) -> None:
    result = run_sbatch({"DRY_RUN": "1", "PATH": "/usr/bin:/bin"}, "spec.yaml")
    assert result.returncode == 2 and "usage:" in result.stderr


FAKE_RAY = """case $1 in
  get-auth-token) printf fake-token ;;
  start) echo "start pid=$$ mode=$RAY_AUTH_MODE token=$RAY_AUTH_TOKEN $*" >> "$HOME/log"
         exec </dev/null >/dev/null 2>&1 3>&-  # an orphaned sleep must not hold the pipes
         ON_TERM
         while :; do sleep 5 & wait $!; done ;;
  *) echo "ray $*" >> "$HOME/log"; exit 1 ;;
esac
"""
STOPS_ON_TERM = """trap 'kill $! 2>/dev/null; echo "TERM pid=$$" >> "$HOME/log"; exit 0' TERM"""
IGNORES_TERM = "trap '' TERM"
FAKE_PYTHON = """if [[ $1 == -m ]]; then
  echo "sweep mode=$RAY_AUTH_MODE $*" >> "$HOME/log"; exit 3
fi
cat >/dev/null; grep -c '^start' "$HOME/log" || true
"""
FAKE_SRUN = """while [[ $1 == -* ]]; do if [[ $1 == -w ]]; then shift; fi; shift; done
exec "$@"
"""


def test_sbatch_run_starts_steps_runs_sweep_then_terms_only_its_steps(tmp_path: Path) -> None:
    fake_ray = FAKE_RAY.replace("ON_TERM", STOPS_ON_TERM)
    env = write_tools(tmp_path / "bin", {
        "srun": FAKE_SRUN, "ray": fake_ray, "python": FAKE_PYTHON,
        "scontrol": "printf '%s\\n' node001 node002 node003\n",
        "hostname": "echo fe80::1 10.9.8.7\n",
    })
    result = run_sbatch(env | {"RAY_POLL_S": "0.1"}, "spec.yaml", "s3://b/p")
    assert result.returncode == 3, result.stderr  # the sweep's exit status
    log = (tmp_path / "log").read_text().splitlines()
    starts = [ln for ln in log if ln.startswith("start ")]
    assert len(starts) == 3 and "--head" in starts[0] and "--node-ip-address=10.9.8.7" in starts[0]
    assert all("mode=token token=fake-token" in ln for ln in starts)
    assert all("--address=10.9.8.7:6379" in ln for ln in starts[1:])
    sweep = log.index("sweep mode=token -m sweeps run spec.yaml --storage s3://b/p "
                      "--address 10.9.8.7:6379")
    terms = [ln.split("=")[1] for ln in log[sweep + 1:] if ln.startswith("TERM ")]
    assert sorted(terms) == sorted(ln.split()[1].split("=")[1] for ln in starts)
    assert not [ln for ln in log if ln.startswith("ray ")]


def test_sbatch_kills_steps_that_ignore_sigterm(tmp_path: Path) -> None:
    env = write_tools(tmp_path / "bin", {
        "srun": FAKE_SRUN, "ray": FAKE_RAY.replace("ON_TERM", IGNORES_TERM), "python": FAKE_PYTHON,
        "scontrol": "echo node001\n", "hostname": "echo 10.9.8.7\n",
    })
    result = run_sbatch(env | {"RAY_POLL_S": "0.1", "RAY_STOP_GRACE_S": "1"}, "s.yaml", "/st")
    assert result.returncode == 3, result.stderr
    pids = [ln.split()[1].split("=")[1] for ln in (tmp_path / "log").read_text().splitlines()
            if ln.startswith("start ")]
    assert len(pids) == 1 and not Path(f"/proc/{pids[0]}").exists()


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


def test_sbatch_head_address_skips_loopback(tmp_path: Path) -> None:
    """`hostname --ip-address` gives 127.0.1.1 on Debian-style /etc/hosts: the head must
    bind a routable address (from `hostname -I`), or no worker can ever join."""
    srun = ('echo "srun $*" >> "$HOME/called"\n'
            'case "$*" in *"hostname --ip-address"*) echo 127.0.1.1;;\n'
            '  *"hostname -I"*) echo "10.7.7.7 172.17.0.1";; *) exit 97;; esac\n')
    tools = {"srun": srun, "scontrol": "echo n1\n", "ray": 'echo "ray $*" >> "$HOME/called"\n',
             "python": 'echo "python $*" >> "$HOME/called"; exit 97\n'}
    # the wait for the head polls its address (in the foreground, unlike the head's start)
    env = write_tools(tmp_path / "bin", tools) | {"RAY_WAIT_S": "2", "RAY_POLL_S": "1"}
    run_sbatch(env, "spec.yaml", "/shared/store")
    called = (tmp_path / "called").read_text()
    assert "python - 10.7.7.7:6379" in called, called
    assert "127.0.1.1:" not in called and "=127.0.1.1" not in called


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
