"""CidrLists, subnet_of and network_signals."""

from __future__ import annotations

import ipaddress
import random
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tokenward.data import EXAMPLE_LISTS, example_list
from tokenward.facts import RequestFacts
from tokenward.signals.network import (
    CidrListError,
    CidrLists,
    NetworkSettings,
    load_lists,
    network_signals,
    parse_ip,
    subnet_of,
)


def facts_from(ip: str) -> RequestFacts:
    return RequestFacts(
        request_id="t",
        received_at=0.0,
        method="POST",
        path="/api/chat",
        client_ip=ip,
        headers={},
        raw_headers=(),
        body=b"",
        route=None,
    )


def test_shipped_examples_load_and_match() -> None:
    lists = CidrLists.from_files({name: example_list(name) for name in EXAMPLE_LISTS})
    assert lists.names == ("datacenter", "tor")
    assert lists.entries("datacenter") == 6
    assert lists.ranges("datacenter") == 5  # the two /25 halves merged into one /24
    assert lists.lookup("192.0.2.77") == ("datacenter",)
    assert lists.lookup("198.51.100.255") == ("datacenter",)
    assert lists.lookup("203.0.113.7") == ("datacenter",)
    assert lists.lookup("203.0.113.8") == ()
    assert lists.lookup("203.0.113.11") == ("tor",)
    assert lists.lookup("2001:db8:1ff:ffff::1") == ("datacenter",)  # inside 2001:db8:100::/40
    assert lists.lookup("2001:db8:200::1") == ()
    assert lists.lookup("2001:db8:7a::53") == ("tor",)
    with pytest.raises(ValueError):
        example_list("proxy")


def test_format() -> None:
    lines = [
        "# comment",
        "",
        "   10.0.0.0/8   # inline comment",
        "172.16.5.4/12",  # host bits are ignored -> 172.16.0.0/12
        "8.8.8.8",
        "2001:db8::/32",
        "::ffff:100.64.0.0/106",  # IPv4-mapped: 100.64.0.0/10
        "fe80::1",
    ]
    lists = CidrLists.from_lines({"x": lines})
    assert lists.entries("x") == 6
    for ip, hit in [
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("172.31.0.1", True),
        ("172.32.0.0", False),
        ("8.8.8.8", True),
        ("8.8.8.9", False),
        ("2001:db8:ffff::1", True),
        ("100.127.255.255", True),
        ("::ffff:10.1.2.3", True),  # a mapped client address is looked up as IPv4
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fe80::2", False),
        ("not an ip", False),
        ("", False),
    ]:
        assert lists.contains("x", ip) is hit, ip
        assert (lists.lookup(ip) == ("x",)) is hit, ip


def test_everything_lists() -> None:
    lists = CidrLists.from_lines({"all": ["0.0.0.0/0", "::/0"]})
    assert lists.lookup("0.0.0.0") == lists.lookup("255.255.255.255") == ("all",)
    assert lists.lookup("::") == lists.lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ("all",)


def test_overlapping_lists_all_hit() -> None:
    lists = CidrLists.from_lines({"datacenter": ["203.0.113.0/24"], "tor": ["203.0.113.9"], "vpn": ["10.0.0.0/8"]})
    assert lists.lookup("203.0.113.9") == ("datacenter", "tor")
    assert lists.lookup("203.0.113.10") == ("datacenter",)


def test_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "dc.txt"
    f.write_text("10.0.0.0/8\n10.0.0.0/33\nbanana\n1.2.3.4/x\n::1/129\n::ffff:1.2.3.4/90\n10.1.2.3%eth0\n")
    with pytest.raises(CidrListError) as err:
        CidrLists.from_files({"datacenter": f})
    problems = err.value.problems
    assert [p[: p.index(": ")] for p in problems] == [
        f"{f}:2",
        f"{f}:3",
        f"{f}:4",
        f"{f}:5",
        f"{f}:6",
        f"{f}:7",
    ]
    assert "banana" in str(err.value)
    lenient = CidrLists.from_files({"datacenter": f}, strict=False)
    assert lenient.entries("datacenter") == 1 and lenient.lookup("10.9.9.9") == ("datacenter",)
    with pytest.raises(CidrListError, match=r"missing\.txt"):
        CidrLists.from_files({"tor": tmp_path / "missing.txt"})
    with pytest.raises(CidrListError, match="list names"):
        CidrLists.from_lines({"Bad Name": []})


def test_matches_ipaddress_on_random_data() -> None:
    rng = random.Random(7)
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(800):
        nets.append(ipaddress.ip_network((rng.getrandbits(32), rng.randint(8, 32)), strict=False))
    for _ in range(200):
        nets.append(ipaddress.ip_network((rng.getrandbits(128), rng.randint(16, 128)), strict=False))
    lists = CidrLists.from_lines({"x": [str(n) for n in nets]})
    probes = [str(n.network_address) for n in nets[:200]] + [str(n.broadcast_address) for n in nets[:200]]
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(1000)]
    probes += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(500)]
    by_family = {4: [n for n in nets if n.version == 4], 6: [n for n in nets if n.version == 6]}
    for ip in probes:
        addr = ipaddress.ip_address(ip)
        expected = any(addr in n for n in by_family[addr.version])
        assert lists.contains("x", ip) is expected, ip


def test_subnet_of() -> None:
    assert subnet_of("203.0.113.77") == "203.0.113.0/24"
    assert subnet_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert subnet_of("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert subnet_of("2001:0DB8:ABCD:0012:0000:0000:0000:0001") == "2001:db8:abcd::/48"
    assert subnet_of("::1") == "::/48"
    assert subnet_of("unknown") == "unknown"
    assert parse_ip("1.2.3") is None and parse_ip("1.2.3.4") == (4, 0x01020304)


def test_subnet_of_agrees_with_ipaddress() -> None:
    """The guard keys subnet limits with subnet_of: it must group as the stdlib does."""

    def reference(ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return str(ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 48}", strict=False))

    rng = random.Random(5)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(300)]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(300)]
    ips += ["::ffff:192.0.2.1", "::", "0.0.0.0", "garbage"]
    for ip in ips:
        assert subnet_of(ip) == reference(ip), ip


def test_network_signals_and_settings(tmp_path: Path) -> None:
    (tmp_path / "tor.txt").write_text("203.0.113.9\n")
    (tmp_path / "hosting.txt").write_text("203.0.113.0/24\n")
    cfg = NetworkSettings.model_validate(
        {"lists": {"tor": str(tmp_path / "tor.txt"), "hosting": {"file": str(tmp_path / "hosting.txt"), "weight": 1.5}}}
    )
    lists = load_lists(cfg)
    signals = network_signals(facts_from("203.0.113.9"), lists, cfg)
    assert [(s.name, s.score, s.evidence["ip"]) for s in signals] == [
        ("network/tor", 4.0, "203.0.113.9"),
        ("network/hosting", 1.5, "203.0.113.9"),
    ]
    assert network_signals(facts_from("198.51.100.1"), lists, cfg) == []
    assert network_signals(facts_from("unknown"), lists, cfg) == []
    assert NetworkSettings().weight_of("datacenter") == 2.0
    assert NetworkSettings().weight_of("residential-proxy") == 2.0
    assert load_lists(NetworkSettings()).names == ()
    with pytest.raises(ValidationError):
        NetworkSettings.model_validate({"lists": {"Tor Exits": "x.txt"}})
    with pytest.raises(ValidationError):
        NetworkSettings.model_validate({"lists": {"tor": {"file": "x.txt", "wieght": 2}}})


def test_a_million_cidrs(tmp_path: Path) -> None:
    """1,000,000 entries (90% IPv4 of mixed sizes, 10% IPv6) load in seconds; a lookup
    costs a few microseconds."""
    rng = random.Random(1)
    v4_plens = (16, 20, 22, 24, 24, 24, 28, 32, 32)
    lines = []
    for _ in range(900_000):
        a = rng.getrandbits(32)
        lines.append(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/{rng.choice(v4_plens)}")
    for _ in range(100_000):
        a = rng.getrandbits(64)
        lines.append(
            f"2001:{(a >> 48) & 0xFFFF:x}:{(a >> 32) & 0xFFFF:x}:{(a >> 16) & 0xFFFF:x}::/{rng.choice((48, 64))}"
        )
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines))

    started = time.perf_counter()
    lists = CidrLists.from_files({"datacenter": path, "proxy": example_list("tor")})
    load_s = time.perf_counter() - started
    probes = [
        f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(50_000)
    ]
    probes += [f"2001:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::1" for _ in range(10_000)]
    started = time.perf_counter()
    hits = sum(1 for ip in probes if lists.lookup(ip))
    lookup_us = (time.perf_counter() - started) / len(probes) * 1e6
    print(
        f"\n1,000,000 CIDRs ({lists.ranges('datacenter'):,} merged ranges): load {load_s:.2f} s; "
        f"lookup {lookup_us:.2f} µs ({hits:,} of {len(probes):,} probes hit)"
    )
    assert lists.entries("datacenter") == 1_000_000
    assert load_s < 15  # about 2-4 s on a 2-core VM; generous for a loaded CI machine
    assert lookup_us < 10
