"""Integration: a sweep whose storage is an S3 bucket (moto's server on loopback).

Trials write rows, checkpoints and Tune state through pyarrow's S3 filesystem, as they would
from other nodes of a cluster; nothing lands on the driver's local disk.
"""

from __future__ import annotations

import socket

import pyarrow.fs as pafs
import pytest
from conftest import lottery
from conftest import write_spec

from analysis import commits
from analysis.load import load_runs
from sweeps.store import join_uri

pytestmark = pytest.mark.ray

SPEC = {"name": "s3t", "dataset": "digits", "methods": ["dense", "lth", "pf"], "lrs": [0.1],
        "sparsities": [0.5], "seeds": [0], "training": {"epochs": 1}}


@pytest.fixture
def bucket(monkeypatch):
    """A moto S3 server on 127.0.0.1 with an empty bucket; yields (storage URI, filesystem)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("lottery")
    try:
        yield (f"s3://lottery/sweeps?endpoint_override=127.0.0.1:{port}&scheme=http"
               f"&region=us-east-1", fs, creds)
    finally:
        server.stop()


def test_sweep_results_and_checkpoints_go_to_the_object_store(tmp_path, ray_env, bucket):
    uri, fs, creds = bucket
    env = {**ray_env, **creds}
    spec_path = write_spec(tmp_path / "s3t.yaml", SPEC)
    first = lottery(["run", str(spec_path), "--storage", uri], env, tmp_path)
    assert "3 trials launched" in first.stderr

    runs = load_runs(join_uri(uri, "s3t"))
    assert sorted(runs.method) == ["dense", "lth", "pf"]
    names = [i.path for i in fs.get_file_info(pafs.FileSelector("lottery/sweeps/s3t",
                                                                recursive=True))]
    assert any(n.endswith("/init.pt") for n in names)
    assert any(n.endswith("level_0/final.pt") for n in names)
    assert any("/tune/" in n for n in names)  # Ray Tune's own experiment state
    assert "lottery/sweeps/s3t/spec.json" in names
    [bundle] = [n for n in names if "/commits/" in n]  # the end-of-run compaction folded
    assert "/commits/compact-" in bundle                 # the records into one bundle
    with fs.open_input_stream(bundle) as stream:
        assert len(commits.Bundle.decode(stream.read()).records) == 3 + 4  # + chain levels 0..3
    assert "lottery/sweeps/s3t/lease.json" not in names  # released (taken by write-and-read)
    assert not any(".tmp" in n for n in names)
    assert not list(tmp_path.glob("**/*.parquet"))  # nothing on the driver's disk

    again = lottery(["run", str(spec_path), "--storage", uri], env, tmp_path)
    assert "0 trials launched" in again.stderr
    status = lottery(["status", "s3t", "--storage", uri], env, tmp_path)
    assert "grid points done: 3 of 3" in status.stdout and "3 done" in status.stdout
