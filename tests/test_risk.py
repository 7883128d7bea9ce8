"""Issue 3 end to end: identity that survives IP rotation, subnet limits, reasons in the
log, and policy changes picked up without a restart."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import yaml
from tests.conftest import GatewayProc, Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header

from tokenward.log import read_recent
from tokenward.sdk.device import DeviceKey

CHAT = "/v1/chat/completions"


def send(
    client: httpx.Client, gw: GatewayProc, body: bytes, *, ip: str | None = None, device: DeviceKey | None = None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if ip is not None:
        headers["x-forwarded-for"] = ip
    challenge = client.post(f"{gw.url}/.tokenward/challenge", json={"route": CHAT}, headers=headers).json()
    for _ in range(2):  # like the SDKs: one retry with the challenge a 401 carries
        proof = proof_header(challenge, body)
        headers["Tokenward-Proof"] = proof
        if device is not None:
            headers["Tokenward-Device"] = device.header(proof, body)
        reply = client.post(gw.url + CHAT, content=body, headers=headers)
        if reply.status_code != 401:
            break
        challenge = reply.json()["error"]["challenge"]
    return reply


def logged(gw: GatewayProc, request_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in read_recent(gw.db, 2000):
            if row["request_id"] == request_id:
                return row
        time.sleep(0.05)
    raise AssertionError(f"{request_id} not in the log")


RISK_POLICY = {
    "trusted_proxies": ["127.0.0.1/32"],  # simulated client addresses arrive in X-Forwarded-For
    "proof": {"difficulty": 2},
    "devices": {"registration_difficulty": 2},
    # The farm below registers its 500 devices from one address: this test is about
    # request limits, not the registration limit (tests/robustness covers that).
    "behaviour": {"max_registrations_per_subnet": 1000},
    "limits": [
        {"name": "per-device", "key": "device", "limit": 40, "window": 600},
        {"name": "per-subnet", "key": "subnet", "limit": 300, "window": 600},
    ],
}


def test_one_device_rotating_through_500_ips_is_limited_as_one_device(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, RISK_POLICY)
    try:
        device = DeviceKey()
        with httpx.Client(timeout=10) as client:
            device.register(client, gw.url)
            replies = [
                send(client, gw, chat_body(f"rotating {i}"), ip=f"10.{i // 250}.{i % 250}.{7 + i % 3}", device=device)
                for i in range(500)
            ]
        statuses = [r.status_code for r in replies]
        assert statuses[:40] == [200] * 40
        assert set(statuses[40:]) == {429}, sorted(set(statuses[40:]))
        throttled = replies[-1]
        assert throttled.json()["error"]["code"] == "throttled"
        assert int(throttled.headers["retry-after"]) > 0
        row = logged(gw, throttled.headers["tokenward-request-id"])
        assert row["name"] == "limit/per-device"
        assert "limit/per-device" in row["reasons"]
        assert "behaviour/device-ip-churn" in row["reasons"]  # many addresses, one device
        assert any(s["name"] == "device/ok" for s in row["signals"])
    finally:
        gw.stop()


def test_500_devices_behind_one_subnet_are_throttled_as_a_subnet(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, RISK_POLICY)
    try:
        statuses = []
        with httpx.Client(timeout=10) as client:
            for i in range(500):
                device = DeviceKey()
                ip = f"198.51.100.{i % 250 + 1}"
                device.register(client, gw.url)
                r = send(client, gw, chat_body(f"farm {i}"), ip=ip, device=device)
                statuses.append(r.status_code)
                last = r
            # Another subnet is not affected.
            other = send(client, gw, chat_body("elsewhere"), ip="203.0.113.9", device=DeviceKey())
        assert statuses[:300] == [200] * 300
        assert set(statuses[300:]) == {429}
        row = logged(gw, last.headers["tokenward-request-id"])
        assert row["name"] == "limit/per-subnet"
        assert "behaviour/subnet-crowd" in row["reasons"]
        assert other.status_code == 200
    finally:
        gw.stop()


def test_forged_device_signature_is_weighed(tmp_path, demo_upstream: Upstream) -> None:
    gw = start_gateway(tmp_path, demo_upstream.url, RISK_POLICY)
    try:
        with httpx.Client(timeout=10) as client:
            victim, thief = DeviceKey(), DeviceKey()
            victim.register(client, gw.url)
            body = chat_body("forged")
            challenge = get_challenge(gw.url, CHAT, client)
            proof = proof_header(challenge, body)
            # The thief signs with its own key but claims the victim's id.
            forged = thief.header(proof, body).replace(thief.id, victim.id)
            r = client.post(
                gw.url + CHAT,
                content=body,
                headers={"content-type": "application/json", "Tokenward-Proof": proof, "Tokenward-Device": forged},
            )
        row = logged(gw, r.headers["tokenward-request-id"])
        assert "device/bad-signature" in row["reasons"]
        assert row["risk"]["score"] >= 5
        assert r.status_code == 401 and r.json()["error"]["code"] == "challenge"  # a harder proof, not a 500
    finally:
        gw.stop()


def test_policy_weight_change_is_picked_up_without_restart(tmp_path, demo_upstream: Upstream) -> None:
    # Only the device weight is under test: the client and browser families (this is a
    # Python client on a browser route) are weighed 0 here.
    policy = {
        "routes": [{"path": CHAT, "api": "openai", "clients": "browser"}],
        "proof": {"difficulty": 2},
        "weights": {"client/*": 0, "browser/*": 0},
    }
    gw = start_gateway(tmp_path, demo_upstream.url, policy)
    try:
        with httpx.Client(timeout=10) as client:
            first = send(client, gw, chat_body("before"))
            assert first.status_code == 200
            row = logged(gw, first.headers["tokenward-request-id"])
            assert "device/missing" in row["reasons"] and row["risk"]["score"] == 1

            # The operator decides that browser requests without a device key are bots.
            policy_file = tmp_path / "gw.yaml"
            data = yaml.safe_load(policy_file.read_text())
            data["weights"]["device/missing"] = 9
            policy_file.write_text(yaml.safe_dump(data))
            deadline = time.monotonic() + 10
            while True:
                r = send(client, gw, chat_body("after"))
                if r.status_code != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 403 and r.json()["error"]["code"] == "blocked"
            row = logged(gw, r.headers["tokenward-request-id"])
            assert row["name"] == "risk/9" and row["risk"]["score"] == 9

            # A broken edit is ignored: the last good policy stays in force.
            policy_file.write_text("routes: [nonsense")
            time.sleep(1.5)
            assert send(client, gw, chat_body("still")).status_code == 403
        assert gw.proc.poll() is None

        out = subprocess.run(
            [sys.executable, "-m", "tokenward.cli", "log", "tail", "--db", str(gw.db), "-n", "3"],
            capture_output=True, text=True, check=True, env={"COLUMNS": "250", "PATH": ""},
        )  # fmt: skip
        assert "risk/9" in out.stdout and "device/missing" in out.stdout
    finally:
        gw.stop()
