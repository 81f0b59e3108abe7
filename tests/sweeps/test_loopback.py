"""Whether a run starts its own Ray, and the switch that keeps that Ray on loopback."""

from __future__ import annotations

import os

import pytest

from sweeps import loopback


def test_a_run_starts_its_own_ray_without_an_address_or_ray_address(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert loopback.own_ray(None)
    assert not loopback.own_ray("auto")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # as `ray job submit` sets it
    assert not loopback.own_ray(None)


def test_use_sets_single_machine_mode_unless_the_user_chose(monkeypatch) -> None:
    monkeypatch.delenv(loopback.ENV, raising=False)
    loopback.use()
    assert os.environ[loopback.ENV] == "0"
    monkeypatch.setenv(loopback.ENV, "1")
    loopback.use()
    assert os.environ[loopback.ENV] == "1"


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.0.2.2", False),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False)])
def test_is_loopback(host: str, expected: bool) -> None:
    assert loopback.is_loopback(host) is expected


def test_is_loopback_refuses_a_hostname() -> None:
    with pytest.raises(ValueError):
        loopback.is_loopback("localhost")
