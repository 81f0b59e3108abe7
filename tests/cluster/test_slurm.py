"""Offline checks of ``cluster/slurm-ray.sbatch``: valid bash, no `ray stop`, its dry run, and
its run against fake `srun` / `ray` / `python` (steps started, the sweep run, only its own
steps stopped, a routable head address)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SBATCH = CLUSTER / "slurm-ray.sbatch"


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
