"""Whether a run starts its own Ray, and keeping that Ray on loopback.

Ray 2.60 turns a node address of 127.0.0.1 (``ray.init(_node_ip_address="127.0.0.1")``,
``ray start --node-ip-address 127.0.0.1``) into the machine's routable address
(``ray._private.services.resolve_ip_for_localhost``), and its GCS, raylet, agents and workers
then listen on every interface. Ray's single-machine mode, the one it runs on macOS and
Windows, keeps the node address 127.0.0.1 and binds every one of those ports to loopback (seen
with ``ss -ltnp`` on Linux); ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` chooses it on Linux too.
Its only other effect is that no node can join (``ray start --address`` aborts), and a local
Ray has no other node. Ray reads the variable once, when ``ray`` is first imported, so it is
set before that: by the CLI for a run that starts its own Ray, by the tests for theirs.

Standard library only: the CLI calls it before anything imports Ray.
"""

from __future__ import annotations

import ipaddress
import os

ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def own_ray(address: str | None) -> bool:
    """Whether a run given ``address`` starts its own local Ray: no ``--address`` and no
    ``RAY_ADDRESS`` (which ``ray job submit`` sets for its drivers)."""
    return not (address or os.environ.get("RAY_ADDRESS"))


def use() -> None:
    """Have the Ray that this process (or a child) starts next run on loopback only, as a
    single machine (the module's docstring says how). Call it before ``ray`` is imported; a
    value the user set wins."""
    os.environ.setdefault(ENV, "0")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address, IPv4-mapped IPv6 included) is a loopback address.

    Raises:
        ValueError: ``host`` is not an IP address.
    """
    ip = ipaddress.ip_address(host.strip("[]"))
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
