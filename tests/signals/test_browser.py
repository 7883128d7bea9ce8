"""parse_env and browser_signals on real Chromium reports and proofs, and on crafted ones."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from tokenward.decision import Flavour, Signal
from tokenward.facts import RequestFacts, parse_call
from tokenward.proof import ProofClaims, solve
from tokenward.signals.browser import (
    BROWSER_WEIGHTS,
    BrowserEnv,
    BrowserSettings,
    browser_signals,
    parse_env,
    prompt_chars,
)

from .capture import Capture, CaptureServer
from .conftest import Captured

DEFAULT = BrowserSettings()
PY_PROOFS = 6


def names(signals: list[Signal]) -> set[str]:
    return {s.name for s in signals}


def run(cap: Capture, cfg: BrowserSettings = DEFAULT, *, browser_route: bool = True) -> list[Signal]:
    facts = cap.facts()
    env = parse_env(facts.headers.get("tokenward-signals"))
    return browser_signals(env, facts, cap.proof, cfg, now=cap.arrived, browser_route=browser_route)


def encode(obj: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def crafted(env: dict[str, Any] | None, headers: dict[str, str] | None = None, body: Any = None) -> RequestFacts:
    h = {"user-agent": CHROME_UA, "accept-language": "en-US,en;q=0.9", **(headers or {})}
    if env is not None:
        h["tokenward-signals"] = encode(env)
    raw_body = orjson.dumps(body or {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    call = parse_call(Flavour.OPENAI, raw_body)
    return RequestFacts(
        request_id="t",
        received_at=1_750_000_000.0,
        method="POST",
        path="/api/chat",
        client_ip="198.51.100.7",
        headers=h,
        raw_headers=tuple((k.encode(), v.encode()) for k, v in h.items()),
        body=raw_body,
        route=None,
        call=None if isinstance(call, str) else call,
    )


def signals_of(facts: RequestFacts, cfg: BrowserSettings = DEFAULT, proof: ProofClaims | None = None,
               now: float = 1_750_000_000.0) -> list[Signal]:  # fmt: skip
    env = parse_env(facts.headers.get("tokenward-signals"))
    return browser_signals(env, facts, proof, cfg, now=now, browser_route=True)


CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
# What a real desktop Chrome reports (the shape of the captured ones, with a real GPU).
GOOD_ENV: dict[str, Any] = {
    "v": 1,
    "wd": False,
    "ua": CHROME_UA,
    "uad": {
        "brands": [{"brand": "Chromium", "version": "156"}, {"brand": "Google Chrome", "version": "156"}],
        "mobile": False,
        "platform": "Windows",
    },
    "gl": {"vendor": "Google Inc. (NVIDIA)", "renderer": "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11)"},
    "scr": [2560, 1440, 2560, 1392, 24, 1],
    "vp": [1700, 1200, 1716, 1320],
    "tz": "Europe/Berlin",
    "tzo": -120,  # summer time at the tests' fixed instant (2025-06-15)
    "langs": ["en-US", "en"],
    "hc": 12,
    "dm": 8,
    "touch": 0,
    "plugins": 5,
    "hl": [],
    "input": {"keys": 70, "pastes": 0, "pasted_chars": 0, "chars": 64, "focus_ms": 9000},
}


def env_with(**changes: Any) -> dict[str, Any]:
    """GOOD_ENV with some fields replaced (None is sent as JSON null)."""
    return {**GOOD_ENV, **changes}


# --------------------------------------------------------------------------------------
# parse_env
# --------------------------------------------------------------------------------------
def test_parse_env_on_real_chromium_values(captured: Captured, browsers: dict) -> None:
    for profile in ("headless", "headed"):
        cap = captured.one(profile)
        env = parse_env(cap.facts().headers["tokenward-signals"])
        assert isinstance(env, BrowserEnv)
        assert env.invalid == ()
        assert env.ua == cap.facts().headers["user-agent"]
        assert env.webdriver is (profile == "headless")
        assert env.screen is not None and env.viewport is not None and env.hardware_concurrency
        assert env.input is not None and env.input.keys >= len("How do I rotate")
        assert dict(env.brands).get("Chromium")


def test_parse_env_problems() -> None:
    assert parse_env(None) is None
    assert parse_env("") == "empty Tokenward-Signals"
    assert parse_env("not base64!") == "Tokenward-Signals is not base64url"
    assert parse_env("éé") == "Tokenward-Signals is not base64url"
    assert parse_env(base64.urlsafe_b64encode(b"{nope").decode()) == "Tokenward-Signals is not JSON"
    assert parse_env(encode([1, 2])) == "Tokenward-Signals is not a JSON object"
    big = encode({"pad": "x" * 4100})
    assert parse_env(big) == "Tokenward-Signals larger than 4096 bytes"
    assert parse_env("A" * 100_000) == "Tokenward-Signals larger than 4096 bytes"
    # Exactly 4 KB of JSON is fine; padding is tolerated.
    exact = {"p": "x" * (4096 - len(b'{"p":""}'))}
    assert isinstance(parse_env(encode(exact)), BrowserEnv)
    assert isinstance(parse_env(base64.urlsafe_b64encode(orjson.dumps({"v": 1})).decode()), BrowserEnv)


def test_parse_env_is_lenient_per_field() -> None:
    env = parse_env(encode({"v": 1, "wd": "yes", "hc": 8, "scr": "big", "langs": ["en", 3], "new_field": 1}))
    assert isinstance(env, BrowserEnv)
    assert env.hardware_concurrency == 8 and env.webdriver is None and env.screen is None
    assert set(env.invalid) == {"wd", "scr", "langs"}
    sig = browser_signals(env, crafted(None), None, DEFAULT, now=0, browser_route=True)
    assert "browser/signals-invalid-field" in names(sig)


# --------------------------------------------------------------------------------------
# Real browsers
# --------------------------------------------------------------------------------------
def test_headless_chromium_is_flagged(captured: Captured, browsers: dict) -> None:
    for cap in captured.all("headless"):
        signals = run(cap)
        assert {"browser/webdriver", "browser/headless"} <= names(signals)
        assert "browser/ua-mismatch" not in names(signals)
        assert "browser/solve-too-fast" not in names(signals)
        assert sum(s.score for s in signals) >= 9  # block with the default thresholds
        headless = next(s for s in signals if s.name == "browser/headless")
        assert headless.evidence["markers"] == ["ua-headless"]


def test_headed_like_chromium_stays_below_the_challenge_threshold(captured: Captured, browsers: dict) -> None:
    for cap in captured.all("headed"):
        signals = run(cap)
        got = names(signals)
        assert not got & {"browser/webdriver", "browser/headless", "browser/ua-mismatch", "browser/no-input"}
        # What remains is the VM this runs on: SwiftShader, a window filling the screen.
        assert got <= {"browser/software-renderer", "browser/screen-odd"}
        assert sum(s.score for s in signals) < 3


def test_prompt_set_by_script_has_no_input_evidence(captured: Captured, browsers: dict) -> None:
    for profile in ("headless", "headed"):
        signals = {s.name: s for s in run(captured.one(f"{profile}-scripted"))}
        evidence = signals["browser/no-input"].evidence
        assert evidence["keys"] == 0 and evidence["chars"] > 100
        for cap in captured.all(profile):  # the same page with typed prompts
            assert "browser/no-input" not in names(run(cap))


def test_missing_signals_on_a_browser_route(captured: Captured) -> None:
    for label in ("openai", "httpx", "curl-cffi"):
        assert names(run(captured.one(label))) == {"browser/no-signals"}
        assert run(captured.one(label), browser_route=False) == []


def test_server_routes_get_nothing(captured: Captured, browsers: dict) -> None:
    assert run(captured.one("headless"), browser_route=False) == []


# --------------------------------------------------------------------------------------
# Solve-time plausibility
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def python_proofs(capture_server: CaptureServer) -> list[Capture]:
    """Issue -> solve with tokenward.proof.challenge.solve -> send, over real HTTP."""
    route = "/c/pysolver/api/chat"
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})
    with httpx.Client(base_url=capture_server.url) as client:
        for _ in range(PY_PROOFS):
            challenge = client.post("/.tokenward/challenge", json={"route": route}).json()
            nonce = solve(challenge["challenge"], body, challenge["difficulty"])
            client.post(
                route,
                content=body,
                headers={
                    "content-type": "application/json",
                    "tokenward-proof": f"v1.{challenge['challenge']}.{nonce}",
                },
            )
    caps = capture_server.app.by_label("pysolver")
    assert len(caps) == PY_PROOFS and all(c.proof is not None for c in caps)
    return caps


def _rate(caps: list[Capture]) -> float:
    hashes = sum(c.proof.nonce + 1 for c in caps if c.proof)
    seconds = sum(c.arrived - c.proof.issued_at for c in caps if c.proof)
    return hashes / seconds


def test_real_browser_proofs_are_never_too_fast(captured: Captured, browsers: dict) -> None:
    caps = [c for p in ("headless", "headed") for c in captured.all(p) + captured.all(f"{p}-scripted")]
    assert len(caps) == 8 and all(c.proof is not None for c in caps), [c.proof_problem for c in caps]
    for cap in caps:
        assert "browser/solve-too-fast" not in names(run(cap)), cap.proof
        assert "browser/prev-solve-too-fast" not in names(run(cap))


def test_default_ceiling_is_well_above_the_sdk_speed(browsers: dict) -> None:
    """The SDK's own measured speed (one ~2^20-hash proof per profile) must stay far
    below the default ceiling, or real browsers would be flagged."""
    for profile, data in browsers.items():
        rate = data["rate"]["hashes"] / (data["rate"]["ms"] / 1000)
        print(f"\nSDK in {profile} Chromium: {rate / 1e6:.2f}M hashes/s with {data['rate']['workers']} workers")
        assert rate < DEFAULT.max_browser_hash_rate / 2


def test_python_solver_timing(python_proofs: list[Capture], browsers: dict) -> None:
    """The reference Python solver is about as fast as the SDK in a browser, so solve time
    cannot single it out; the check flags proofs faster than the configured ceiling
    (shown here on the same real proofs with a ceiling below their speed)."""
    py_rate = _rate(python_proofs)
    sdk = max(d["rate"]["hashes"] / (d["rate"]["ms"] / 1000) for d in browsers.values())
    print(f"\nPython solve() issue->arrival: {py_rate / 1e6:.2f}M hashes/s; SDK: {sdk / 1e6:.2f}M hashes/s")
    for cap in python_proofs:
        assert "browser/solve-too-fast" not in names(run(cap))
    strict = BrowserSettings(max_browser_hash_rate=py_rate / 4, clock_tolerance=0)
    timed = [c for c in python_proofs if c.proof and c.proof.nonce + 1 >= strict.min_hashes_for_timing]
    flagged = [c for c in timed if "browser/solve-too-fast" in names(run(c, strict))]
    assert len(flagged) >= len(timed) - 1  # the per-request HTTP overhead can hide one very lucky nonce
    sig = next(s for s in run(flagged[0], strict) if s.name == "browser/solve-too-fast")
    assert sig.evidence["nonce"] == flagged[0].proof.nonce  # type: ignore[union-attr]
    assert sig.evidence["rate"] > strict.max_browser_hash_rate
    assert sig.evidence["age_ms"] < sig.evidence["min_ms"]


def _claims(nonce: int, issued_at: float, difficulty: int = 16) -> ProofClaims:
    return ProofClaims(
        challenge_id=b"\0" * 16, kid=b"\0" * 4, difficulty=difficulty, issued_at=issued_at, expires_at=issued_at + 120,
        nonce=nonce,
    )  # fmt: skip


def test_solve_time_boundaries() -> None:
    cfg = BrowserSettings(max_browser_hash_rate=1_000_000, min_hashes_for_timing=4096, clock_tolerance=0.002)
    facts = crafted(GOOD_ENV)
    now = 1_750_000_000.0

    def fast(nonce: int, age: float) -> bool:
        return "browser/solve-too-fast" in names(signals_of(facts, cfg, _claims(nonce, now - age), now))

    assert fast(99_999, 0.050)  # 100k hashes need 100 ms at 1M/s
    assert not fast(99_999, 0.099)  # within the clock tolerance
    assert not fast(99_999, 0.5)
    assert not fast(4094, 0.0)  # too few hashes to time
    assert fast(4095, 0.0)
    assert fast(99_999, -0.5)  # issued "in the future": another instance's clock is ahead
    neg = next(s for s in signals_of(facts, cfg, _claims(99_999, now + 0.5), now) if s.name == "browser/solve-too-fast")
    assert neg.evidence["rate"] is None


def test_prev_solve_report() -> None:
    cfg = BrowserSettings(max_browser_hash_rate=1_000_000)
    too_fast = crafted(env_with(prev={"ms": 10, "hashes": 500_000, "workers": 2, "difficulty": 18}))
    assert "browser/prev-solve-too-fast" in names(signals_of(too_fast, cfg))
    fine = crafted(env_with(prev={"ms": 600, "hashes": 500_000, "workers": 2, "difficulty": 18}))
    assert "browser/prev-solve-too-fast" not in names(signals_of(fine, cfg))
    rounded = crafted(env_with(prev={"ms": 0, "hashes": 900, "workers": 2, "difficulty": 8}))
    assert "browser/prev-solve-too-fast" not in names(signals_of(rounded, cfg))


# --------------------------------------------------------------------------------------
# Crafted reports
# --------------------------------------------------------------------------------------
def test_a_real_desktop_report_is_clean() -> None:
    assert signals_of(crafted(GOOD_ENV)) == []


def test_malformed_and_missing() -> None:
    facts = crafted(None, {"tokenward-signals": "%%%"})
    assert [(s.name, s.evidence["problem"]) for s in signals_of(facts)] == [
        ("browser/signals-malformed", "Tokenward-Signals is not base64url")
    ]
    assert names(signals_of(crafted(None))) == {"browser/no-signals"}
    headless_ua = CHROME_UA.replace("Chrome/", "HeadlessChrome/")
    assert names(signals_of(crafted(None, {"user-agent": headless_ua}))) == {"browser/no-signals", "browser/headless"}


def test_copied_report_disagrees_with_the_request() -> None:
    other_ua = CHROME_UA.replace("156", "149")
    sig = signals_of(crafted(env_with(ua=other_ua)))
    assert names(sig) == {"browser/ua-mismatch"}
    assert "differs" in sig[0].evidence["reasons"][0]
    mac = env_with(uad={"brands": [{"brand": "Chromium", "version": "156"}], "mobile": False, "platform": "macOS"})
    assert names(signals_of(crafted(mac))) == {"browser/ua-mismatch"}
    old = env_with(uad={"brands": [{"brand": "Chromium", "version": "120"}], "mobile": False, "platform": "Windows"})
    assert names(signals_of(crafted(old))) == {"browser/ua-mismatch"}


def test_webdriver_headless_markers_and_renderers() -> None:
    assert names(signals_of(crafted(env_with(wd=True)))) == {"browser/webdriver"}
    sig = signals_of(crafted(env_with(hl=["no-window-chrome", "no-window-chrome"])))
    assert [(s.name, s.evidence["markers"]) for s in sig] == [("browser/headless", ["no-window-chrome"])]
    for renderer in ("Google SwiftShader", "llvmpipe (LLVM 15.0.6, 256 bits)", "Microsoft Basic Render Driver"):
        sig = signals_of(crafted(env_with(gl={"vendor": "x", "renderer": renderer})))
        assert names(sig) == {"browser/software-renderer"}
        assert sig[0].score == 1.0  # weak: VMs without GPUs are real people too
    assert names(signals_of(crafted(env_with(gl=None)))) == {"browser/no-webgl"}


def test_screen_oddities() -> None:
    def reasons(**changes: Any) -> list[str]:
        sig = [s for s in signals_of(crafted(env_with(**changes))) if s.name == "browser/screen-odd"]
        return list(sig[0].evidence["reasons"]) if sig else []

    assert reasons() == []
    assert reasons(scr=[0, 0, 0, 0, 24, 1]) == ["zero-size screen"]
    assert reasons(scr=[800, 600, 800, 600, 24, 1], vp=[780, 500, 800, 600]) == ["800x600 screen (headless default)"]
    assert reasons(vp=[3000, 1200, 3000, 1300]) == ["window larger than the screen"]
    assert reasons(scr=[1920, 1080, 1920, 1080, 24, 1], vp=[1920, 1080, 1920, 1080]) == [
        "viewport is the whole screen, no browser UI"
    ]
    # A phone's layout viewport is legitimately wider than its screen.
    phone = {"scr": [412, 915, 412, 915, 24, 2.6], "vp": [980, 1900, 980, 2000], "touch": 5}
    assert reasons(**phone) == []


def test_locale_consistency() -> None:
    def reasons(env: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
        sig = [s for s in signals_of(crafted(env, headers)) if s.name == "browser/locale-odd"]
        return list(sig[0].evidence["reasons"]) if sig else []

    assert reasons(env_with(tz="")) == ["no time zone"]
    assert reasons(env_with(langs=[])) == ["no languages"]
    assert reasons(env_with(tzo=-60)) == ["offset -60 does not fit Europe/Berlin"]  # winter time in June
    assert reasons(env_with(tz="America/New_York", tzo=240)) == []
    assert reasons(env_with(tz="Mars/Olympus")) == []  # unknown zone: no evidence either way
    assert reasons(env_with(), {"accept-language": "fr-FR,fr;q=0.9"}) == ["languages en-US vs accept-language fr-fr"]
    assert reasons(env_with(langs=["en-GB", "en"])) == []  # same language, other region


def test_hardware() -> None:
    assert names(signals_of(crafted(env_with(hc=0)))) == {"browser/hardware-odd"}
    assert names(signals_of(crafted(env_with(hc=None)))) == {"browser/hardware-odd"}


def test_input_evidence() -> None:
    long_prompt = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    # No character count reported: the prompt's length in the body is used.
    no_chars = env_with(input={"keys": 0, "pastes": 0, "pasted_chars": 0})
    sig = signals_of(crafted(no_chars, body=long_prompt))
    assert [(s.name, s.evidence["chars"]) for s in sig] == [("browser/no-input", 400)]
    pasted = env_with(input={"keys": 2, "pastes": 1, "pasted_chars": 398, "chars": 400})
    assert signals_of(crafted(pasted, body=long_prompt)) == []
    short = env_with(input={"keys": 0, "pastes": 0, "pasted_chars": 0, "chars": 12})
    assert signals_of(crafted(short)) == []
    # The SDK may not track input at all: only a site that says it does expects it.
    untracked = env_with(input=None)
    assert signals_of(crafted(untracked, body=long_prompt)) == []
    expect = BrowserSettings(expect_input=True)
    assert names(signals_of(crafted(untracked, body=long_prompt), expect)) == {"browser/no-input"}


def test_prompt_chars_of_api_shapes() -> None:
    def chars(body: dict[str, Any]) -> int | None:
        call = parse_call(Flavour.OPENAI, orjson.dumps(body))
        assert not isinstance(call, str)
        return prompt_chars(call)

    assert chars({"messages": [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "zz"}]}) == 3
    assert (
        chars({"messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image"}]}]}) == 4
    )
    assert chars({"input": "hello"}) == 5
    assert chars({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hey"}]}]}) == 3
    assert chars({"prompt": "12345678"}) == 8
    assert chars({"messages": [{"role": "system", "content": "abc"}]}) is None
    assert prompt_chars(None) is None


def test_weights_table() -> None:
    assert all(n.startswith("browser/") and w > 0 for n, w in BROWSER_WEIGHTS.items())
