"""The real node (hack/cluster/node.sh) keeps its network to itself: cluster DNS answers the cluster domain
and refuses everything else (nothing is forwarded upstream), and the pod and service ranges are routed to
the node's bridge only."""
from __future__ import annotations

import socket
import struct
import subprocess

import pytest

pytestmark = [pytest.mark.realnode]

BRIDGE = "adminapi0"


def dns_query(name: str, server: str) -> tuple[int, list[str]]:
    """One A query over UDP: (RCODE, the A records of the answer)."""
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(4096)
    _, flags, _, answers, _, _ = struct.unpack(">HHHHHH", reply[:12])
    offset, records = 12 + len(question) + 4, []
    for _ in range(answers):
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else reply.index(b"\0", offset) + 1 - offset
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == 1:
            records.append(socket.inet_ntoa(reply[offset:offset + length]))
        offset += length
    return flags & 0xF, records


def test_cluster_dns_answers_the_cluster_domain_only(real_cluster):
    assert dns_query("kubernetes.default.svc.cluster.local", real_cluster.bridge_ip) == (0, ["10.96.0.1"])
    rcode, records = dns_query("pypi.org", real_cluster.bridge_ip)
    assert rcode == 5 and records == []  # REFUSED: no upstream to ask


def test_pod_and_service_ranges_are_routed_to_the_bridge_only(real_cluster):
    for address in ("10.244.3.4", "10.96.0.10"):
        route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True, check=True).stdout
        assert f"dev {BRIDGE}" in route, route
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    nodeports = [line for line in nat.splitlines() if "KUBE-NODEPORTS" in line and line.startswith("-A KUBE-SERVICES")]
    assert nodeports and all("10.244.0.0/16" in line or "-d 10.244.0.1" in line for line in nodeports), nodeports
