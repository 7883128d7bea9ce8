"""The dashboard (docs/dashboard.md): a known mix of decisions written through the real log
writer (SQLite, and PostgreSQL when reachable), the admin app served by uvicorn on a real
socket, its JSON API checked for exact counts, its sign-in for refusals, and real Chromium
reading the charts, the explorer and one decision's evidence."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser.conftest import ServerThread
from tests.conftest import Upstream, start_gateway
from tests.independent_client import chat_body, get_challenge, proof_header
from tests.log.conftest import database, dsn  # noqa: F401 - fixtures, for the PostgreSQL run

from tokenward.admin.app import admin_app
from tokenward.admin.dashboard import person_rank, subnet_of
from tokenward.log import DecisionRecord, open_log
from tokenward.simulate.browsers import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "admin-token-for-the-dashboard-test"
DASH = "/.tokenward/dashboard"
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
XSS_PATH = "/v1/<img src=x onerror=alert(1)>"
XSS_UA = "<script>window.__xss = 1</script><b>bold</b>"


def _sig(name: str, score: float, **evidence: Any) -> dict[str, Any]:
    return {"name": name, "score": score, "evidence": evidence}


def _risk(score: float, under_attack: bool = False, threshold: float | None = None) -> dict[str, Any]:
    risk: dict[str, Any] = {"score": score, "contributions": [], "rule": None, "threshold": threshold}
    if under_attack:
        risk["under_attack"] = True
    return risk


def mix(now: float) -> list[DecisionRecord]:
    """29 decisions in the last hour and one two hours ago (see the expectations below)."""
    recs: list[DecisionRecord] = []
    n = 0

    def add(ts: float, **fields: Any) -> None:
        nonlocal n
        n += 1
        signals = fields.pop("signals", [])
        base: dict[str, Any] = {
            "ts": ts, "request_id": f"{n:032x}", "method": "POST", "path": fields.get("route") or CHAT,
            "route": CHAT, "client_ip": "198.51.100.1", "status": 200, "signals": signals,
            "reasons": [s["name"] for s in signals if s["score"] or s["name"].startswith("proof/")],
        }  # fmt: skip
        base.update(fields)
        recs.append(DecisionRecord(**base))

    proof_ok = _sig("proof/ok", 0.0, difficulty=10, age_ms=420)
    for i in range(12):  # allowed: 8 from dev-A, 4 from dev-B; two from a new account, four an older one
        signals = [proof_ok, _sig("device/ok", 0.0, device="dev-A" if i < 8 else "dev-B")]
        if i < 2:
            signals.append(_sig("identity/new-account", 1.0, account="acct_new2", age_s=60))
        account = "acct_new2" if i < 2 else "acct_older" if i < 6 else None
        add(now - 3000 + i * 180, action="allow", name="proof/ok", client_ip=f"198.51.100.{i % 3 + 1}", account=account,
            signals=signals, proof={"difficulty": 10, "age_ms": 420}, risk=_risk(1.0 if i < 2 else 0.0),
            upstream_status=200, cost_usd=0.01, reserved_usd=0.03, model="gpt-4o-mini", tokens_in=120,
            tokens_out=40, usage_exact=True)  # fmt: skip
    for i in range(2):  # degraded, on another route, from one IPv6 /64
        add(now - 1500 + i * 60, action="degrade", name="risk/3", route=MESSAGES, path=MESSAGES,
            client_ip=f"2001:db8:1:2::{i + 5}", signals=[proof_ok, _sig("device/ok", 0.0, device="dev-B")],
            risk=_risk(3.0, threshold=3), upstream_status=200, cost_usd=0.002, reserved_usd=0.01)  # fmt: skip
    for i in range(5):  # no proof at all: challenged
        add(now - 2400 + i * 30, action="challenge", name="proof/missing", code="proof_required", status=401,
            client_ip=f"203.0.113.{10 + i}", risk=_risk(3.0),
            signals=[_sig("proof/missing", 0.0), _sig("device/missing", 1.0),
                     _sig("client/sdk-header", 2.0, headers=["x-stainless-lang"])])  # fmt: skip
    attack_ts = now - 1200
    for i in range(4):  # blocked on risk: a farm; three judged under attack; one with attacker strings
        xss = i == 3
        add(attack_ts if i < 3 else now - 900, action="block", name="risk/9", code="blocked", status=403,
            client_ip="203.0.113.50", reserved_usd=0.02, proof={"difficulty": 12}, account="acct_farm1",
            route=None if xss else CHAT, path=XSS_PATH if xss else CHAT,
            risk=_risk(19.0, under_attack=i < 3, threshold=9),
            signals=[proof_ok, _sig("device/bad-signature", 5.0, claimed="dev-forged"),
                     _sig("client/not-a-browser", 1.0, ua=XSS_UA if xss else "python-httpx/0.28"),
                     _sig("browser/headless", 4.0, markers=["ua-headless"]),
                     _sig("behaviour/clockwork", 2.0, cv=0.01, interval_s=1.0),
                     _sig("identity/new-account", 1.0, account="acct_farm1", age_s=30),
                     _sig("content/template-farm", 4.0, identities=40, part="system", template="abcdef123456",
                          per="device", window_s=3600)])  # fmt: skip
    for i in range(3):  # over a rate limit, otherwise clean: who looked most like a person
        add(now - 600 + i * 10, action="throttle", name="limit/per-device", code="throttled", status=429,
            client_ip="192.0.2.7", reserved_usd=0.05, risk=_risk(0.0),
            signals=[proof_ok, _sig("device/ok", 0.0, device="dev-C")],
            reasons=["proof/ok", "limit/per-device"])  # fmt: skip
    for _ in range(2):  # the spend breaker open
        add(now - 300, action="throttle", name="breaker/open", code="spend_limit", status=503,
            client_ip="192.0.2.99", reasons=["breaker/open"])  # fmt: skip
    add(
        now - 100,
        action="invalid",
        name="request/bad",
        code="bad_request",
        status=400,
        client_ip="203.0.113.99",
        reasons=["request/bad"],
    )  # a body that is not JSON: no judgement
    add(now - 7200, action="allow", name="proof/ok", signals=[proof_ok], cost_usd=1.0, upstream_status=200)
    return recs


EXPECTED_TOTALS = {"allow": 12, "degrade": 2, "challenge": 5, "throttle": 5, "block": 4, "invalid": 1}


async def _write(uri: str, records: list[DecisionRecord]) -> None:
    log = open_log(uri)
    await log.start()
    for rec in records:
        log.record(rec)
    await log.close()


class Served:
    def __init__(self, log_uri: str, token: str | None = TOKEN):
        self.server = ServerThread(admin_app(render_metrics=lambda: b"", token=token, log_uri=log_uri))
        self.server.start()
        self.url = self.server.url

    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}
        return httpx.get(self.url + DASH + path, headers=headers, timeout=30, **kw)

    def api(self, path: str, **params: Any) -> Any:
        r = self.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'decisions.db'}?journal=off"
    asyncio.run(_write(uri, mix(time.time())))
    return uri


@pytest.fixture(params=["sqlite", "postgres"])
def log_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_uri"))
    pytest.importorskip("psycopg")
    uri = f"{request.getfixturevalue('dsn')}&journal=off"
    asyncio.run(_write(uri, mix(time.time())))
    return uri


@pytest.fixture
def served(log_uri: str) -> Iterator[Served]:
    s = Served(log_uri)
    yield s
    s.stop()


def test_the_api_counts_the_known_mix_exactly(served: Served) -> None:
    s = served.api("/api/summary", window=3600)
    assert s["totals"] == EXPECTED_TOTALS
    assert s["requests"] == 29 and s["refusals"] == 15
    assert sum(sum(p["actions"].values()) for p in s["series"]) == 29 and len(s["series"]) == 60
    assert s["spend_usd"] == pytest.approx(12 * 0.01 + 2 * 0.002)
    assert s["refused_usd"] == pytest.approx(4 * 0.02 + 3 * 0.05)
    assert s["refused_estimated"] == 7  # the blocks and the rate-limited: the others never did their work
    assert s["under_attack_buckets"] == 1 and s["breaker_trips"] == 2
    attacked = [p for p in s["series"] if p["under_attack"]]
    assert attacked[0]["under_attack"] == 3 and attacked[0]["attacked_routes"] == [CHAT]
    assert [(r["name"], r["count"]) for r in s["reasons"]] == [
        ("proof/missing", 5), ("risk/9", 4), ("limit/per-device", 3), ("breaker/open", 2), ("request/bad", 1)
    ]  # fmt: skip
    assert s["routes"] == [CHAT, MESSAGES]
    assert "breaker/open" in s["names"] and "proof/ok" in s["names"]
    older = served.api("/api/summary", window=6 * 3600)  # the decision two hours ago is in the 6h window
    assert older["requests"] == 30 and older["spend_usd"] == pytest.approx(1.124)

    t = served.api("/api/top", window=3600)
    assert [(r["key"], r["refusals"], round(r["refused_usd"], 6)) for r in t["subnets"]["refused"]] == [
        ("192.0.2.0/24", 5, 0.15), ("203.0.113.0/24", 10, 0.08)
    ]  # fmt: skip
    assert [(r["key"], r["allowed"], round(r["allowed_usd"], 6)) for r in t["subnets"]["allowed"]] == [
        ("198.51.100.0/24", 12, 0.12), ("2001:db8:1:2::/64", 2, 0.004)
    ]  # fmt: skip
    devices = {r["key"]: r for r in t["devices"]["refused"] + t["devices"]["allowed"]}
    assert [r["key"] for r in t["devices"]["allowed"]] == ["dev-A", "dev-B"]
    assert devices["dev-A"]["allowed"] == 8 and devices["dev-B"]["allowed"] == 6
    assert [(r["key"], r["refusals"], r["verified"]) for r in t["devices"]["refused"]] == [
        ("dev-C", 3, True), ("dev-forged", 4, False)
    ]  # fmt: skip
    assert [(r["key"], r["refusals"]) for r in t["accounts"]["refused"]] == [("acct_farm1", 4)]
    # Every account the requests were judged as (the log's account column), new or not.
    assert [(r["key"], r["allowed"]) for r in t["accounts"]["allowed"]] == [("acct_older", 4), ("acct_new2", 2)]
    assert [(r["key"], r["refusals"]) for r in t["templates"]["refused"]] == [("system:abcdef123456", 4)]
    assert t["templates"]["allowed"] == []

    p = served.api("/api/people", window=3600)["people"]
    assert len(p) == 7  # blocks and throttles with signals; not the breaker, not the challenges
    assert [r["name"] for r in p[:3]] == ["limit/per-device"] * 3
    assert p[0]["worked"] and p[0]["device"] and p[0]["automation_weight"] == 0
    assert [r["automation_weight"] for r in p[3:]] == [17.0] * 4

    def count(**params: Any) -> int:
        d = served.api("/api/decisions", since=time.time() - 3600, **params)["decisions"]
        return len(d)

    assert count() == 29
    assert count(action="block") == 4 and count(action="refused") == 15 and count(action="allow") == 12
    assert count(action="invalid") == 1
    assert count(route=MESSAGES) == 2 and count(route=XSS_PATH) == 1
    assert count(reason="client/sdk-header") == 5  # a signal among the reasons
    assert count(reason="risk/9") == 4  # the rule that decided
    assert count(reason="risk_9") == 0  # LIKE wildcards are escaped
    assert count(client="192.0.2.7") == 3
    assert count(action="block", limit=2) == 2
    assert len(served.api("/api/decisions", since=time.time() - 3 * 3600)["decisions"]) == 30
    assert served.get("/api/decisions", params={"action": "nonsense"}).status_code == 400

    blocked = served.api("/api/decisions", action="block")["decisions"]
    one = served.api(f"/api/decision/{blocked[0]['request_id']}")
    assert one["action"] == "block" and one["name"] == "risk/9" and one["risk"]["score"] == 19.0
    weights = {s["name"]: s["score"] for s in one["signals"]}
    assert weights["browser/headless"] == 4.0 and weights["device/bad-signature"] == 5.0
    template = next(s for s in one["signals"] if s["name"] == "content/template-farm")
    assert template["evidence"]["template"] == "abcdef123456"
    assert one["reserved_usd"] == pytest.approx(0.02) and one["proof"] == {"difficulty": 12}
    assert served.get("/api/decision/" + "f" * 32).status_code == 404


def test_the_dashboard_is_refused_without_the_token(sqlite_uri: str) -> None:
    s = Served(sqlite_uri)
    try:
        page = s.get("/", headers={"authorization": "", "accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/.tokenward/signin"
        assert "dashboard.js" not in page.text
        for path in ("/", "/api/summary", "/api/decisions", "/static/dashboard.js"):
            for auth in ("", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
                r = s.get(path, headers={"authorization": auth}, follow_redirects=False)
                assert r.status_code == 401, (path, auth, r.status_code)
                assert "dashboard.js" not in r.text and "tokenward-dashboard" not in r.text
        forged = s.get("/api/summary", headers={"authorization": "", "cookie": "tokenward_admin=" + "0" * 64})
        assert forged.status_code == 401
        wrong = httpx.post(s.url + "/.tokenward/signin", data={"token": "nope"}, follow_redirects=False)
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        ok = s.get("/")
        assert ok.status_code == 200 and "static/dashboard.js" in ok.text
        csp = ok.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
        assert s.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert s.get("/static/../dashboard.py").status_code == 404
    finally:
        s.stop()
    unconfigured = Served(sqlite_uri, token=None)  # no admin token: no dashboard at all
    try:
        for path in ("/", "/api/summary"):
            assert unconfigured.get(path).status_code == 404
        assert httpx.get(unconfigured.url + "/.tokenward/signin").status_code == 404
    finally:
        unconfigured.stop()


def test_an_empty_or_missing_log_says_so(tmp_path: Path) -> None:
    s = Served(f"sqlite:///{tmp_path / 'never-written.db'}")
    try:
        r = s.get("/api/summary")
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_log"
        assert s.get("/").status_code == 200  # the page itself shows the message
    finally:
        s.stop()
    broken = tmp_path / "not-a-database.db"
    broken.write_bytes(b"this is not SQLite " * 100)
    s = Served(f"sqlite:///{broken}")
    try:
        r = s.get("/api/decisions")
        assert r.status_code == 503 and r.json()["error"]["code"] == "log_error"
        assert str(tmp_path) not in r.text
    finally:
        s.stop()


def test_it_reads_what_a_real_gateway_logs(tmp_path: Path, demo_upstream: Upstream) -> None:
    """The columns and the signal shape it reads are the ones `tokenward serve` writes."""
    gw = start_gateway(tmp_path, demo_upstream.url, {"proof": {"difficulty": 4}})
    try:
        body = chat_body("dashboard")
        refused = httpx.post(gw.url + CHAT, content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 401
        proof = proof_header(get_challenge(gw.url, CHAT), body)
        allowed = httpx.post(gw.url + CHAT, content=body,
                             headers={"content-type": "application/json", "tokenward-proof": proof})  # fmt: skip
        assert allowed.status_code == 200
    finally:
        gw.stop()  # the log is complete once the gateway has stopped
    s = Served(f"sqlite:///{gw.db}")
    try:
        summary = s.api("/api/summary")
        assert {k: v for k, v in summary["totals"].items() if v} == {"allow": 1, "challenge": 1}
        assert summary["spend_usd"] > 0 and summary["reasons"][0]["name"] == "proof/missing"
        rows = s.api("/api/decisions")["decisions"]
        assert {r["request_id"] for r in rows} == {
            refused.headers["tokenward-request-id"], allowed.headers["tokenward-request-id"]
        }  # fmt: skip
        one = s.api("/api/decision/" + refused.headers["tokenward-request-id"])
        assert one["code"] == "proof_required" and one["signals"][0]["name"] == "proof/missing"
        assert all(set(sig) == {"name", "score", "evidence"} for sig in one["signals"])
        ok = s.api("/api/decision/" + allowed.headers["tokenward-request-id"])
        assert ok["person"]["worked"] and ok["cost_usd"] > 0 and ok["tokens_out"] > 0
    finally:
        s.stop()


def test_subnets_and_person_rank() -> None:
    assert subnet_of("203.0.113.77") == "203.0.113.0/24"
    assert subnet_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert subnet_of("::ffff:192.0.2.9") == "192.0.2.0/24"
    assert subnet_of("not an address") == "not an address"
    rank = person_rank([_sig("proof/ok", 0), _sig("client/sdk-header", 2), _sig("device/ok", 0, device="d")])
    assert rank["worked"] and rank["device"] and rank["automation_weight"] == 2
    assert not person_rank([_sig("proof/missing", 0)])["worked"]


# -- real Chromium -------------------------------------------------------------------------


def png_colours(data: bytes) -> int:
    """The number of distinct pixel values of an 8-bit RGB(A) PNG (decoded here: no Pillow)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    prev, colours, i = bytearray(stride), set(), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[x : x + channels]) for x in range(0, stride, channels * 7))
        prev = line
    return len(colours)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install the Debian 'chromium' package")
def test_chromium_signs_in_reads_the_charts_and_opens_one_decision(sqlite_uri: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    s = Served(sqlite_uri)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

            page.goto(s.url + DASH + "/")  # without the token: the sign-in form, not the page
            assert page.url.endswith("/.tokenward/signin") and page.locator("#kpis").count() == 0
            page.fill("#token", "wrong")
            page.click("button[type=submit]")
            expect(page.locator(".err")).to_have_text("That is not the admin token.")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url("**" + DASH + "/")
            problems.clear()  # the refused sign-in's 401 is logged by Chromium: expected

            legend = page.locator("#legend-requests")
            for action, n in EXPECTED_TOTALS.items():
                expect(legend.locator(f"li[data-action={action}] .count")).to_have_text(str(n))
            expect(legend.locator("li[data-mark=under-attack] .count")).to_have_text("1")
            expect(legend.locator("li[data-mark=breaker] .count")).to_have_text("2")
            expect(page.locator("#kpi-requests")).to_have_text("29")
            expect(page.locator("#kpi-refused")).to_have_text("15")
            expect(page.locator("#legend-spend li[data-series=spend] .count")).to_have_text("$0.1240")
            expect(page.locator("#legend-spend li[data-series=refused] .count")).to_have_text("$0.2300")
            bars = page.eval_on_selector_all(
                "#chart-requests rect[data-action]",
                "rs => rs.reduce((t, r) => {"
                " t[r.dataset.action] = (t[r.dataset.action] || 0) + Number(r.dataset.count); return t; }, {})",
            )
            assert bars == EXPECTED_TOTALS  # the stacked bars draw the same numbers
            assert page.locator("#chart-requests rect[data-mark=under-attack]").count() == 1
            assert page.locator("#chart-spend line[data-mark=breaker]").count() == 1
            expect(page.locator("#reasons tbody tr").first).to_contain_text("proof/missing")
            expect(page.locator("#top-subnets tbody tr").first).to_contain_text("192.0.2.0/24")
            expect(page.locator("#top-templates tbody tr").first).to_contain_text("system:abcdef123456")
            expect(page.locator("#people tbody tr").first).to_contain_text("limit/per-device")

            rows = page.locator("#explorer tbody tr")
            expect(rows).to_have_count(29)
            page.screenshot(path=str(tmp_path / "dashboard.png"))  # the top of the page: totals and charts

            page.uncheck("#live")  # no polling while the test clicks rows
            page.select_option("#f-action", "block")
            expect(rows).to_have_count(4)
            assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.action)")) == {"block"}
            xss_row = rows.filter(has_text=XSS_PATH)  # the attacker's path, shown as text
            expect(xss_row).to_have_count(1)
            assert page.locator("img").count() == 0
            xss_row.click()
            detail = page.locator("#detail")
            expect(detail).to_be_visible()
            signals = page.locator("#detail-signals tbody tr")
            expect(signals).to_have_count(7)
            expect(signals.filter(has_text="browser/headless")).to_contain_text("4")
            expect(signals.filter(has_text="content/template-farm")).to_contain_text("template: abcdef123456")
            expect(signals.filter(has_text="client/not-a-browser")).to_contain_text("ua: " + XSS_UA)
            expect(page.locator("#detail-facts dd[data-field=request]")).to_have_text("POST " + XSS_PATH)
            expect(page.locator("#detail-risk dd[data-field=score]")).to_have_text("19")
            expect(page.locator("#detail-cost")).to_contain_text("$0.0200")
            expect(page.locator("#detail-proof dd[data-field=difficulty]")).to_have_text("12")
            page.screenshot(path=str(tmp_path / "decision.png"))
            assert page.evaluate("window.__xss") is None and page.locator("#detail b, #explorer b").count() == 0
            assert page.locator("#detail img, #explorer img").count() == 0
            page.click("#detail-close")
            expect(detail).to_be_hidden()
            assert not problems, problems
            browser.close()
    finally:
        s.stop()
    shot = (tmp_path / "dashboard.png").read_bytes()
    assert png_colours(shot) >= 12, "the screenshot looks blank"
    docs = ROOT / "docs" / "dashboard.png"
    if os.environ.get("TOKENWARD_UPDATE_SCREENSHOTS") or not docs.exists():
        shutil.copyfile(tmp_path / "dashboard.png", docs)
    assert png_colours(docs.read_bytes()) >= 12, "docs/dashboard.png looks blank"
