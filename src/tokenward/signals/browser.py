"""Browser signals: the environment the SDK reports, the proof's timing, typing evidence.

``Tokenward-Signals`` (docs/protocol.md §4.1) is a base64url JSON object the browser SDK
builds before solving; its exact value is hashed into the proof, so once the proof
verifies the report cannot have been lifted from another request. It is still written
by the client: every check here is evidence, none is proof. Forged reports tend to
contradict themselves (an env user agent that is not the request's, a time zone whose
offset is not the reported one), which is what the consistency checks look for.

**Solve-time plausibility.** The SDK searches nonces upward from 0; with n Web Workers,
worker i searches the interleaved chunks i, i + n, i + 2n, ... of the nonce space, and the
SDK answers with the *smallest* valid nonce only once every worker has moved past it
(src/tokenward/sdk/tokenward.js, solveInWorkers). So a proof with nonce N cost at least
N + 1 hashes in total, however many workers shared them. A proof that arrives sooner
after its challenge was issued than (N + 1) / ``max_browser_hash_rate`` was not solved
by a browser.

What this can and cannot catch (measured, tests/signals/test_browser.py): the SDK's
kernel reaches 1.5-2.5M hashes/s per Web Worker on a 2-core VM, as fast as or faster
than the reference Python solver (about 1.7M/s on the same machine). So a plain Python
script is *not* slower than a browser and is not flagged here; the check catches
solvers faster than any browser running the SDK (multi-core native code, GPUs, solver
farms) that return proofs without pacing them.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..decision import Signal
from ..facts import LLMCall, RequestFacts
from ..proof.challenge import ProofClaims
from .http_client import chrome_major, platform_matches

__all__ = [
    "AUTOMATION_TELLS",
    "BROWSER_WEIGHTS",
    "MAX_SIGNALS_BYTES",
    "BrowserEnv",
    "BrowserSettings",
    "InputEvidence",
    "PrevSolve",
    "browser_signals",
    "parse_env",
    "prompt_chars",
]

MAX_SIGNALS_BYTES = 4096  # the JSON, per docs/protocol.md §4.1
_MAX_HEADER_CHARS = (MAX_SIGNALS_BYTES * 4 + 2) // 3  # its base64url encoding

BROWSER_WEIGHTS: dict[str, float] = {
    "browser/no-signals": 3.0,
    "browser/signals-malformed": 4.0,
    "browser/signals-invalid-field": 1.0,
    "browser/webdriver": 5.0,
    "browser/headless": 5.0,
    "browser/ua-mismatch": 4.0,
    "browser/software-renderer": 1.0,
    "browser/no-webgl": 1.0,
    "browser/screen-odd": 1.0,
    "browser/locale-odd": 1.0,
    "browser/hardware-odd": 1.0,
    "browser/solve-too-fast": 5.0,
    "browser/prev-solve-too-fast": 2.0,
    "browser/no-input": 3.0,
}
_W = BROWSER_WEIGHTS

# Signs that a script, not a person, sent the call: a harder proof does not answer them
# (scoring.Threshold.automated). Each is weighed on its own in BROWSER_WEIGHTS.
AUTOMATION_TELLS = frozenset({
    "browser/no-input", "browser/webdriver", "browser/headless", "browser/solve-too-fast",
    "browser/prev-solve-too-fast", "behaviour/clockwork",
})  # fmt: skip

_SOFTWARE_RENDERERS = ("swiftshader", "llvmpipe", "softpipe", "microsoft basic render", "mesa offscreen")


class BrowserSettings(BaseModel):
    """``browser:`` section of the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_browser_hash_rate: float = Field(
        25_000_000,
        gt=0,
        description="hashes/s a browser can reach with all its SDK workers together (the SDK's 2 workers "
        "measured 1.3-4M/s on a 2-core VM; fast desktops do more); raise it if you configure more workers",
    )
    min_hashes_for_timing: int = Field(
        4096, ge=1, description="proofs with fewer hashes (nonce + 1) are too quick to time"
    )
    clock_tolerance: float = Field(
        0.002, ge=0, le=5, description="seconds of clock difference allowed between gateway instances"
    )
    min_prompt_chars: int = Field(40, ge=1, description="prompts shorter than this are not checked for input")
    min_typed_share: float = Field(
        0.2, ge=0, le=1, description="keys + pasted chars below this share of the prompt: no-input"
    )
    expect_input: bool = Field(
        False, description="the site's SDK reports input evidence: its absence on a long prompt is a signal"
    )


@dataclass(frozen=True, slots=True)
class InputEvidence:
    keys: int = 0
    pastes: int = 0
    pasted_chars: int = 0
    chars: int | None = None
    focus_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PrevSolve:
    ms: float
    hashes: int
    workers: int | None = None
    difficulty: int | None = None


@dataclass(frozen=True, slots=True)
class BrowserEnv:
    """A parsed ``Tokenward-Signals`` report. Fields absent or of the wrong type are None
    (or empty); the names of wrongly typed fields are in ``invalid``."""

    v: int | None = None
    webdriver: bool | None = None
    ua: str | None = None
    brands: tuple[tuple[str, str], ...] = ()
    mobile: bool | None = None
    platform: str | None = None
    gl_present: bool = False  # the gl field was sent (null = no WebGL)
    gl_vendor: str | None = None
    gl_renderer: str | None = None
    screen: tuple[float, ...] | None = None  # width, height, availWidth, availHeight, colorDepth, dpr
    viewport: tuple[float, ...] | None = None  # innerWidth, innerHeight, outerWidth, outerHeight
    timezone: str | None = None
    tz_offset: int | None = None
    languages: tuple[str, ...] | None = None
    hardware_concurrency: int | None = None
    device_memory: float | None = None
    touch_points: int | None = None
    plugins: int | None = None
    headless_markers: tuple[str, ...] = ()
    input: InputEvidence | None = None
    prev: PrevSolve | None = None
    invalid: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------
# orjson yields exact builtin types, so ``type(v) is int`` is exact (and excludes bool).
def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _num_tuple(value: Any, size: int) -> tuple[float, ...] | None:
    if type(value) is not list or len(value) < 2:
        return None
    head = value[:size]
    for x in head:
        if type(x) is not int and type(x) is not float:
            return None
    return tuple([float(x) for x in head])


def _str_tuple(value: Any, max_len: int, max_items: int = 16) -> tuple[str, ...] | None:
    if type(value) is not list:
        return None
    for x in value:
        if type(x) is not str:
            return None
    return tuple([x[:max_len] for x in value[:max_items]])


# Scalar fields: wire key -> (attribute, accepted types, max length for strings).
_SCALARS: tuple[tuple[str, str, tuple[type, ...], int], ...] = (
    ("v", "v", (int,), 0),
    ("wd", "webdriver", (bool,), 0),
    ("ua", "ua", (str,), 300),
    ("tz", "timezone", (str,), 64),
    ("tzo", "tz_offset", (int,), 0),
    ("hc", "hardware_concurrency", (int,), 0),
    ("dm", "device_memory", (int, float), 0),
    ("touch", "touch_points", (int,), 0),
    ("plugins", "plugins", (int,), 0),
)
_INPUT_KEYS = ("keys", "pastes", "pasted_chars", "chars", "focus_ms")


def parse_env(header_value: str | None) -> BrowserEnv | str | None:
    """Parse a ``Tokenward-Signals`` header value.

    Returns None when the header is absent, a problem sentence when it is not a
    base64url JSON object of at most 4 KB, else the report (lenient per field: unknown
    fields are ignored, wrongly typed ones are listed in ``invalid``).
    """
    if header_value is None:
        return None
    value = header_value.strip()
    if not value:
        return "empty Tokenward-Signals"
    if len(value) > _MAX_HEADER_CHARS + 4:
        return f"Tokenward-Signals larger than {MAX_SIGNALS_BYTES} bytes"
    if not value.isascii():
        return "Tokenward-Signals is not base64url"
    b64 = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = binascii.a2b_base64(b64 + "=" * (-len(b64) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return "Tokenward-Signals is not base64url"
    if len(raw) > MAX_SIGNALS_BYTES:
        return f"Tokenward-Signals larger than {MAX_SIGNALS_BYTES} bytes"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "Tokenward-Signals is not JSON"
    if not isinstance(data, dict):
        return "Tokenward-Signals is not a JSON object"
    return _env_from(data)


def _scalar_fields(d: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The scalar fields of a report (attribute -> value) and the wire keys of wrongly typed ones."""
    invalid: list[str] = []
    f: dict[str, Any] = {}
    for key, attr, types, max_len in _SCALARS:
        value = d.get(key)
        if value is None:
            continue
        if type(value) not in types:
            invalid.append(key)
        else:
            f[attr] = value[:max_len] if max_len else value
    return f, invalid


def _ua_data(uad: dict[str, Any]) -> tuple[tuple[tuple[str, str], ...] | None, bool | None, str | None]:
    """brands (None: not sent as a list), mobile, platform of ``navigator.userAgentData``."""
    brands = uad.get("brands")
    mobile = uad.get("mobile")
    platform = uad.get("platform")
    return (
        tuple([(str(b.get("brand"))[:64], str(b.get("version"))[:32]) for b in brands[:8] if type(b) is dict])
        if type(brands) is list
        else None,
        mobile if type(mobile) is bool else None,
        platform[:64] if type(platform) is str else None,
    )


def _webgl(gl: Any) -> tuple[str | None, str | None] | None:
    """(vendor, renderer) of the gl field; JSON null (no WebGL) is (None, None); None: not an object."""
    if gl is None:
        return None, None
    if type(gl) is not dict:
        return None
    vendor, renderer = gl.get("vendor"), gl.get("renderer")
    return (vendor[:200] if type(vendor) is str else None, renderer[:300] if type(renderer) is str else None)


def _input_evidence(inp: Any) -> InputEvidence | None:
    """None: not an object of integers (or nulls)."""
    if type(inp) is not dict:
        return None
    nums = [inp.get(k) for k in _INPUT_KEYS]
    if not all([v is None or type(v) is int for v in nums]):
        return None
    keys, pastes, pasted_chars, chars, focus_ms = nums
    return InputEvidence(keys or 0, pastes or 0, pasted_chars or 0, chars, focus_ms)


def _prev_solve(prev: Any) -> PrevSolve | None:
    """None: not an object with a numeric ``ms`` and an integer ``hashes``."""
    if type(prev) is not dict:
        return None
    ms, hashes, workers, difficulty = prev.get("ms"), prev.get("hashes"), prev.get("workers"), prev.get("difficulty")
    # isinstance narrows for the type checker; the exact type tests exclude bool.
    if not (isinstance(ms, int | float) and isinstance(hashes, int) and _is_num(ms) and _is_int(hashes)):
        return None
    return PrevSolve(
        float(ms), hashes, workers if _is_int(workers) else None, difficulty if _is_int(difficulty) else None
    )


# Structured fields after uad and gl, in the order their problems are listed in ``invalid``:
# wire key -> (attribute, reader); a reader returns None for a value of the wrong shape.
_STRUCTURED: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    # Plain lambdas, not functools.partial: a partial with keywords costs ~0.5 µs a call.
    ("scr", "screen", lambda v: _num_tuple(v, 6)),
    ("vp", "viewport", lambda v: _num_tuple(v, 4)),
    ("langs", "languages", lambda v: _str_tuple(v, 35)),
    ("hl", "headless_markers", lambda v: _str_tuple(v, 40)),
    ("input", "input", _input_evidence),
    ("prev", "prev", _prev_solve),
)


def _env_from(d: Mapping[str, Any]) -> BrowserEnv:
    f, invalid = _scalar_fields(d)
    uad = d.get("uad")
    if type(uad) is dict:
        brands, f["mobile"], f["platform"] = _ua_data(uad)
        if brands is not None:
            f["brands"] = brands
    elif uad is not None:
        invalid.append("uad")
    if "gl" in d:
        gl = _webgl(d["gl"])
        if gl is None:
            invalid.append("gl")
        else:
            f["gl_present"] = True
            f["gl_vendor"], f["gl_renderer"] = gl
    for key, attr, read in _STRUCTURED:
        value = d.get(key)
        if value is not None:
            parsed = read(value)
            if parsed is None:
                invalid.append(key)
            else:
                f[attr] = parsed
    if invalid:
        f["invalid"] = tuple(invalid)
    return BrowserEnv(**f)


# --------------------------------------------------------------------------------------
# Prompt length (for input evidence when the SDK reports no character count)
# --------------------------------------------------------------------------------------
def _text_len(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        n = 0
        for part in content:
            if isinstance(part, str):
                n += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                n += len(part["text"])
        return n
    return 0


def prompt_chars(call: LLMCall | None) -> int | None:
    """Characters of the last user turn of an API call (chat, messages, responses,
    completions, or a custom body with ``prompt``/``message``); None if none is found."""
    if call is None:
        return None
    body = call.body
    for key in ("messages", "input"):
        turns = body.get(key)
        if isinstance(turns, str):
            return len(turns)
        if isinstance(turns, list):
            for turn in reversed(turns):
                if isinstance(turn, dict) and turn.get("role") == "user":
                    return _text_len(turn.get("content"))
            return None
    for key in ("prompt", "message", "query", "question"):
        value = body.get(key)
        if isinstance(value, str):
            return len(value)
    return None


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _utc_offset_minutes(tz: str, hour: int) -> int | None:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    offset = datetime.fromtimestamp(hour * 3600, zone).utcoffset()
    return None if offset is None else int(offset.total_seconds() // 60)


def _screen_reasons(env: BrowserEnv) -> list[str]:
    reasons: list[str] = []
    scr, vp = env.screen, env.viewport
    if scr is not None and (scr[0] <= 0 or scr[1] <= 0):
        reasons.append("zero-size screen")
    if vp is not None and (vp[0] <= 0 or vp[1] <= 0):
        reasons.append("zero-size viewport")
    if scr is not None and scr[0] == 800 and scr[1] == 600:
        reasons.append("800x600 screen (headless default)")
    desktop = not env.mobile and not env.touch_points and not (env.ua and "Mobile" in env.ua)
    if desktop and scr is not None and vp is not None and len(vp) >= 4 and scr[0] > 0 and scr[1] > 0:
        # Mobile layout viewports are legitimately wider than the screen; desktops not.
        if vp[2] > scr[0] + 16 or vp[3] > scr[1] + 16:
            reasons.append("window larger than the screen")
        elif vp[0] == vp[2] and vp[1] == vp[3] and vp[2] == scr[0] and vp[3] == scr[1]:
            reasons.append("viewport is the whole screen, no browser UI")
    return reasons


def _locale_reasons(env: BrowserEnv, headers: Mapping[str, str], now: float) -> list[str]:
    reasons: list[str] = []
    if not env.timezone:
        reasons.append("no time zone")
    elif env.tz_offset is not None:
        expected = _utc_offset_minutes(env.timezone, int(now // 3600))
        if expected is not None and -expected != env.tz_offset:
            reasons.append(f"offset {env.tz_offset} does not fit {env.timezone}")
    if not env.languages:
        reasons.append("no languages")
    else:
        accept = headers.get("accept-language")
        if accept:
            first = accept.split(",", 1)[0].split(";", 1)[0].strip().lower()
            if first and first != "*" and first.split("-", 1)[0] != env.languages[0].lower().split("-", 1)[0]:
                reasons.append(f"languages {env.languages[0]} vs accept-language {first}")
    return reasons


def _ua_reasons(env: BrowserEnv, header_ua: str | None) -> list[str]:
    reasons: list[str] = []
    ua = env.ua
    if ua is not None and header_ua is not None and ua != header_ua:
        reasons.append("navigator.userAgent differs from the user-agent header")
    ua = ua or header_ua
    if ua and env.brands:
        major = chrome_major(ua)
        brands = dict(env.brands)
        chromium = brands.get("Chromium") or brands.get("Google Chrome")
        if major is None:
            reasons.append("userAgentData from a non-Chromium user agent")
        elif chromium is not None and chromium.split(".", 1)[0] != str(major):
            reasons.append(f"userAgentData version {chromium} vs user agent {major}")
    if ua and env.platform and platform_matches(ua, env.platform) is False:
        reasons.append(f"userAgentData platform {env.platform} vs user agent OS")
    return reasons


def _solve_too_fast(proof: ProofClaims, cfg: BrowserSettings, now: float) -> Signal | None:
    hashes = proof.nonce + 1  # the SDK returns the smallest nonce: all below were tried
    if hashes < cfg.min_hashes_for_timing:
        return None
    age = now - proof.issued_at
    min_age = hashes / cfg.max_browser_hash_rate
    if age + cfg.clock_tolerance < min_age:
        return Signal(
            "browser/solve-too-fast",
            _W["browser/solve-too-fast"],
            {
                "nonce": proof.nonce,
                "difficulty": proof.difficulty,
                "age_ms": round(age * 1000, 1),
                "min_ms": round(min_age * 1000, 1),
                "rate": round(hashes / age) if age > 0 else None,
            },
        )
    return None


def _headless_evidence(env: BrowserEnv, header_ua: str | None) -> list[str]:
    """The report's headless markers, deduplicated, led by ``ua-headless`` when either user agent says so."""
    markers = list(dict.fromkeys(env.headless_markers))
    if "ua-headless" not in markers and (
        (header_ua and "HeadlessChrome" in header_ua) or (env.ua and "HeadlessChrome" in env.ua)
    ):
        markers.insert(0, "ua-headless")
    return markers[:8]


def _webgl_signal(env: BrowserEnv) -> Signal | None:
    """No WebGL at all, or a software renderer (headless and VM browsers)."""
    if not env.gl_present:
        return None
    if env.gl_renderer is None and env.gl_vendor is None:
        return Signal("browser/no-webgl", _W["browser/no-webgl"], {})
    renderer = (env.gl_renderer or "").lower()
    if any(s in renderer for s in _SOFTWARE_RENDERERS):
        evidence = {"renderer": (env.gl_renderer or "")[:120]}
        return Signal("browser/software-renderer", _W["browser/software-renderer"], evidence)
    return None


def _prev_solve_too_fast(prev: PrevSolve, cfg: BrowserSettings) -> Signal | None:
    """The page's own report of its previous solve claims a rate no browser reaches."""
    if prev.hashes < cfg.min_hashes_for_timing:
        return None
    # +1 ms: pages report whole milliseconds.
    if prev.hashes / ((max(prev.ms, 0.0) + 1) / 1000) > cfg.max_browser_hash_rate:
        return Signal(
            "browser/prev-solve-too-fast",
            _W["browser/prev-solve-too-fast"],
            {"ms": prev.ms, "hashes": prev.hashes, "workers": prev.workers},
        )
    return None


def _no_input(inp: InputEvidence | None, call: LLMCall | None, cfg: BrowserSettings) -> Signal | None:
    """A long prompt with too few keystrokes and pasted characters behind it."""
    chars = inp.chars if inp is not None and inp.chars is not None else prompt_chars(call)
    if chars is None or chars < cfg.min_prompt_chars:
        return None
    if inp is None:
        if cfg.expect_input:
            return Signal("browser/no-input", _W["browser/no-input"], {"chars": chars, "reported": False})
        return None
    if inp.keys + inp.pasted_chars < chars * cfg.min_typed_share:
        return Signal(
            "browser/no-input",
            _W["browser/no-input"],
            {"chars": chars, "keys": inp.keys, "pastes": inp.pastes, "pasted_chars": inp.pasted_chars},
        )
    return None


def browser_signals(
    env: BrowserEnv | str | None,
    facts: RequestFacts,
    proof: ProofClaims | None,
    cfg: BrowserSettings,
    *,
    now: float,
    browser_route: bool,
) -> list[Signal]:
    """Signals from the client-environment report and the proof's timing.

    ``env`` is what :func:`parse_env` returned for the request's ``Tokenward-Signals``;
    ``proof`` the verified claims (None without a valid proof); ``now`` the arrival
    time on the same clock that issued challenges. Routes not meant for browsers get
    nothing: servers neither send reports nor solve at browser speed.
    """
    if not browser_route:
        return []
    out: list[Signal] = []
    header_ua = facts.headers.get("user-agent")
    if proof is not None and (signal := _solve_too_fast(proof, cfg, now)) is not None:
        out.append(signal)

    if not isinstance(env, BrowserEnv):  # no report to check: say so (and what the header shows)
        if header_ua and "HeadlessChrome" in header_ua:
            out.append(Signal("browser/headless", _W["browser/headless"], {"markers": ["ua-headless"]}))
        if env is None:
            out.append(Signal("browser/no-signals", _W["browser/no-signals"], {}))
        else:
            out.append(Signal("browser/signals-malformed", _W["browser/signals-malformed"], {"problem": env}))
        return out

    if env.invalid:
        out.append(
            Signal("browser/signals-invalid-field", _W["browser/signals-invalid-field"], {"fields": list(env.invalid)})
        )
    if env.webdriver:
        out.append(Signal("browser/webdriver", _W["browser/webdriver"], {}))
    if markers := _headless_evidence(env, header_ua):
        out.append(Signal("browser/headless", _W["browser/headless"], {"markers": markers}))
    if reasons := _ua_reasons(env, header_ua):
        out.append(Signal("browser/ua-mismatch", _W["browser/ua-mismatch"], {"reasons": reasons}))
    if (signal := _webgl_signal(env)) is not None:
        out.append(signal)
    if reasons := _screen_reasons(env):
        evidence = {"reasons": reasons, "screen": env.screen, "viewport": env.viewport}
        out.append(Signal("browser/screen-odd", _W["browser/screen-odd"], evidence))
    if reasons := _locale_reasons(env, facts.headers, now):
        out.append(Signal("browser/locale-odd", _W["browser/locale-odd"], {"reasons": reasons}))
    if env.hardware_concurrency is None or env.hardware_concurrency <= 0:
        out.append(Signal("browser/hardware-odd", _W["browser/hardware-odd"], {"hc": env.hardware_concurrency}))
    if env.prev is not None and (signal := _prev_solve_too_fast(env.prev, cfg)) is not None:
        out.append(signal)
    if (signal := _no_input(env.input, facts.call, cfg)) is not None:
        out.append(signal)
    return out
