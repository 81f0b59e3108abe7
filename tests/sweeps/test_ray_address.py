"""A run given an address where no Ray answers fails in seconds (``sweeps.ray_address``), not
after ``ray.init``'s minutes of retries; these use plain TCP listeners, no Ray."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from conftest import lottery
from conftest import write_spec

from sweeps import ray_address
from sweeps.errors import ClusterUnreachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns


@pytest.fixture
def listener(request) -> Iterator[int]:
    """A TCP socket listening on ``request.param`` (a host); yields its port."""
    with socket.socket() as s:
        s.bind((request.param, 0))
        s.listen()
        yield s.getsockname()[1]


def test_ray_address_overrides_none_and_auto_only(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address.given(None) == ("", "")
    assert ray_address.given("auto") == ("auto", "--address auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address.given(None) == ("10.0.0.1:6379", "RAY_ADDRESS=10.0.0.1:6379")
    assert ray_address.given("auto") == ("10.0.0.1:6379", "RAY_ADDRESS=10.0.0.1:6379")
    assert ray_address.given("10.0.0.2:6379") == ("10.0.0.2:6379", "--address 10.0.0.2:6379")


def test_no_address_is_not_checked(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_address.check(None)  # the run starts its own Ray


@pytest.mark.parametrize("listener", ["0.0.0.0"], indirect=True)
def test_a_listening_gcs_port_passes(listener, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_address.check(f"127.0.0.1:{listener}")  # whichever address Ray makes of 127.0.0.1
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listener}")
    ray_address.check(None)


def test_a_closed_port_fails_naming_it(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = _closed_port()
    with pytest.raises(ClusterUnreachable, match=rf"^--address 127.0.0.1:{port}: nothing "
                                                 rf"answers at \S+:{port} \(Connection refused"):
        ray_address.check(f"127.0.0.1:{port}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ClusterUnreachable, match=rf"^RAY_ADDRESS=127.0.0.1:{port}: "):
        ray_address.check("auto")


def test_an_address_that_does_not_answer_fails_within_the_timeout():
    with socket.socket() as s:  # a full accept queue drops further connection attempts
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            with pytest.raises(ClusterUnreachable,
                               match=rf"no answer from 127.0.0.1:{port} in 0.3 s$"):
                ray_address.check(f"ray://127.0.0.1:{port}", timeout_s=0.3)


@pytest.mark.parametrize("listener", ["127.0.0.1"], indirect=True)
def test_ray_client_addresses_are_tried_as_written(listener, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_address.check(f"ray://127.0.0.1:{listener}")
    port = _closed_port()
    with pytest.raises(ClusterUnreachable, match=f"nothing answers at 127.0.0.1:{port}"):
        ray_address.check(f"ray://127.0.0.1:{port}")
    with pytest.raises(ClusterUnreachable, match="^--address ray://head:x: .*[Pp]ort"):
        ray_address.check("ray://head:x")
    ray_address.check("anyscale://some-cluster")  # other schemes: Ray's own business


def test_the_dashboards_http_address_is_refused_with_what_to_give_instead(monkeypatch):
    # the Ray docs have users export RAY_ADDRESS=http://127.0.0.1:8265 for `ray job submit`
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(ClusterUnreachable, match=r"^RAY_ADDRESS=http://127.0.0.1:8265: an "
                                                 r"HTTP address is the dashboard's.*HOST:6379"):
        ray_address.check(None)


@pytest.mark.parametrize(("address", "reason"), [
    ("local", "names no running Ray"), ("not an address", "Invalid address"),
    ("no-such-host.invalid:6379", "cannot resolve no-such-host.invalid"),  # RFC 2606: never
])
def test_addresses_that_name_no_cluster_fail(address, reason, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterUnreachable, match=f"^--address {address}: .*{reason}"):
        ray_address.check(address)


def test_lottery_run_with_a_dead_address_exits_2_before_anything_is_written(tmp_path, ray_env):
    spec = write_spec(tmp_path / "s.yaml", {"name": "dead", "dataset": "digits",
                                            "model": "lenet_300_100", "methods": ["dense", "lth"],
                                            "lrs": [0.1], "sparsities": [0.5], "seeds": [0]})
    port = _closed_port()
    proc = lottery(["run", str(spec), "--storage", str(tmp_path / "results"), "--address",
                    f"127.0.0.1:{port}"], ray_env, tmp_path, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"--address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("listener", ["127.0.0.1"], indirect=True)
def test_a_ray_on_loopback_only_gets_the_single_machine_hint_and_no_other_does(listener):
    from ray._private.services import resolve_ip_for_localhost

    if resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1":  # no routable address here
        ray_address.check(f"127.0.0.1:{listener}")  # nothing rewritten: it answers
    else:  # this process is outside single-machine mode: Ray rewrites 127.0.0.1
        with pytest.raises(ClusterUnreachable, match=rf"a Ray listens on 127.0.0.1:{listener} "
                                                     rf"only \(single-machine mode\): set "):
            ray_address.check(f"127.0.0.1:{listener}")
    with pytest.raises(ClusterUnreachable) as refused:  # another host: no hint
        ray_address.check(f"127.0.0.2:{listener}")
    assert "nothing answers at 127.0.0.2" in str(refused.value)
    assert "single-machine" not in str(refused.value)
