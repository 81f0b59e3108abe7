"""Whether the Ray that ``--address`` (or ``RAY_ADDRESS``) names answers, in seconds.

``ray.init(address=...)`` to an address where no Ray listens does not fail: Ray 2.60 retries
its GCS connection for minutes, printing "Failed to connect to GCS" lines. A run that connects
first opens a TCP connection to the GCS (or Ray Client server) that the address names, resolved
as ``ray.init`` resolves it, and fails at once when nothing answers there.

The usual cause on one machine: a Ray started in single-machine mode (``sweeps.loopback``)
listens on 127.0.0.1 only, and a driver without ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` turns
127.0.0.1 (and ``auto``'s recorded address) into the machine's routable address. The error then
says to set the variable.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import SplitResult
from urllib.parse import urlsplit

from sweeps import loopback
from sweeps.errors import ClusterUnreachable

TIMEOUT_S = 5.0  # seconds for the GCS to accept a TCP connection (a reachable head takes ms)
CLIENT_PORT = 10001  # Ray Client's default port (``ray://host`` without one)
HTTP_ADDRESS = ("an HTTP address is the dashboard's, for `ray job submit`; a run needs the "
                "GCS address (HOST:6379), auto, or ray://HOST:10001 (unset RAY_ADDRESS on a "
                "Ray node)")


def given(address: str | None) -> tuple[str, str]:
    """The address ``ray.init(address=address)`` uses, and where it came from (``--address X``
    or ``RAY_ADDRESS=X``): ``RAY_ADDRESS`` overrides none or ``auto``
    (``ray._private.worker.init``). ('', '') when neither is set."""
    env = os.environ.get("RAY_ADDRESS")
    if env and address in (None, "auto"):
        return env, f"RAY_ADDRESS={env}"
    return (address, f"--address {address}") if address else ("", "")


def check(address: str | None, timeout_s: float = TIMEOUT_S) -> None:
    """Raise unless a TCP connection to the Ray that ``address`` names opens in ``timeout_s``.

    ``host:port`` and ``auto`` (the last ``ray start`` on this machine, else its one running
    GCS) are resolved by Ray (``ray._private.services.canonicalize_bootstrap_address``, which
    turns a loopback host into the routable address outside single-machine mode); ``ray://``
    addresses are tried as written; ``http(s)://`` (the dashboard's, which ``ray job submit``
    takes and ``ray.init`` refuses) is refused. Other schemes are left to Ray. Imports Ray.

    Args:
        address: ``--address``; None uses ``RAY_ADDRESS``.
        timeout_s: Seconds to wait for the connection.
    Raises:
        ClusterUnreachable: the address is malformed or HTTP, ``auto`` finds no running Ray,
            or nothing accepts the connection; the message names what was tried and why.
    """
    name, source = given(address)
    if not name:  # no address: the run starts its own Ray
        return
    client = "://" in name
    target = _client(urlsplit(name), source) if client else _bootstrap(name, source)
    if target is None:  # a scheme left to Ray
        return
    err = _refusal(*target, timeout_s)
    if err is not None:
        why = _why(*target, err, timeout_s)
        if not client and _single_machine_ray_meant(*target):
            why += (f"; a Ray listens on 127.0.0.1:{target[1]} only (single-machine mode): set "
                    f"{loopback.ENV}=0 for this command too")
        raise ClusterUnreachable(source, why)


def _client(url: SplitResult, source: str) -> tuple[str, int] | None:
    """(host, port) of a ``ray://`` address as written; None for schemes left to Ray."""
    if url.scheme in ("http", "https"):
        raise ClusterUnreachable(source, HTTP_ADDRESS)
    if url.scheme != "ray":
        return None
    try:
        host, port = url.hostname, url.port or CLIENT_PORT
    except ValueError as err:  # a port that is not a number
        raise ClusterUnreachable(source, str(err)) from None
    if not host:
        raise ClusterUnreachable(source, "no host in the address")
    return host, port


def _bootstrap(name: str, source: str) -> tuple[str, int]:
    """(host, port) of the GCS that ``ray.init(address=name)`` connects to."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(name)
    except (ConnectionError, ValueError) as err:  # auto: no Ray; not host:port
        raise ClusterUnreachable(source, str(err)) from None
    if resolved is None:  # "local": ray.init would start a Ray, not connect
        raise ClusterUnreachable(source, "names no running Ray (leave --address out to start one)")
    host, _, port = resolved.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ClusterUnreachable(source, f"{resolved!r} has no port number") from None


def _why(host: str, port: int, err: OSError, timeout_s: float) -> str:
    """The reason nothing answered at ``host:port``."""
    if isinstance(err, socket.gaierror):
        return f"cannot resolve {host} ({err.strerror or err})"
    if isinstance(err, TimeoutError):
        return f"no answer from {host}:{port} in {timeout_s:g} s"
    return f"nothing answers at {host}:{port} ({err.strerror or err})"


def _single_machine_ray_meant(host: str, port: int) -> bool:
    """Whether ``host`` is what Ray made of 127.0.0.1 (this machine's routable address) and a
    Ray in single-machine mode answers on 127.0.0.1 at ``port`` instead."""
    from ray._private.services import resolve_ip_for_localhost

    return host == resolve_ip_for_localhost("127.0.0.1") != "127.0.0.1" and \
        _refusal("127.0.0.1", port, 1.0) is None


def _refusal(host: str, port: int, timeout_s: float) -> OSError | None:
    """Why a TCP connection to ``host:port`` did not open within ``timeout_s``; None if it did."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return err
    return None
