"""HTTP client signals: what the request's headers say about the program that sent it.

Two questions, headers only:

* **Which program?** On routes meant for browsers, the fingerprints of API SDKs and HTTP
  libraries (``x-stainless-*``, ``OpenAI/Python``, ``python-httpx``, ``curl``...) mean the
  caller is not the site's page, whatever else it claims.
* **Is a claimed browser consistent?** A request whose ``user-agent`` says Chrome must
  look like one: client hints that agree with the user agent, Fetch Metadata of a
  ``fetch()`` from a page, an ``accept-language``, an ``Origin`` of the site, and the
  relative header order Chromium writes. A lie is a lie on any route, so these checks
  also run on server routes.

The header-order rules come from real captures (tests/signals/): Chromium's ``fetch()``
writes ``host`` first and ``user-agent`` < ``accept`` < ``accept-encoding`` <
``accept-language``; python-httpx, aiohttp and the OpenAI/Anthropic SDKs put ``accept``
before ``user-agent``, requests puts ``accept-encoding`` before ``accept``, and
``curl_cffi``'s Chrome impersonation puts ``host`` last.

Optional TLS fingerprint (JA3/JA4): read from a header that a trusted edge sets, and
believed only when the request came through a trusted proxy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..decision import Signal
from ..facts import RequestFacts

__all__ = [
    "CLIENT_WEIGHTS",
    "ClientSettings",
    "chrome_major",
    "client_signals",
    "origin_of",
    "platform_matches",
]

# Default weight of every signal this module emits (the policy may override by name).
CLIENT_WEIGHTS: dict[str, float] = {
    "client/sdk-header": 5.0,
    "client/sdk-agent": 5.0,
    "client/tool-agent": 4.0,
    "client/no-user-agent": 4.0,
    "client/not-a-browser": 3.0,
    "client/ua-no-client-hints": 3.0,
    "client/ua-hints-mismatch": 4.0,
    "client/fetch-metadata-missing": 3.0,
    "client/fetch-metadata-mismatch": 3.0,
    "client/no-accept-language": 2.0,
    "client/origin-missing": 2.0,
    "client/origin-mismatch": 4.0,
    "client/header-order": 2.0,
    "client/tls-tool": 5.0,
    "client/tls-not-browser": 4.0,
}
_W = CLIENT_WEIGHTS

_ORIGIN_RE = re.compile(r"^(https?)://(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$")


class ClientSettings(BaseModel):
    """``client:`` section of the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_origins: tuple[str, ...] = Field(
        (),
        description="origins of the site's pages (https://example.com, https://*.example.com); "
        "empty: an Origin must name the request's own Host",
    )
    header_order: bool = Field(
        True, description="check Chromium's header order (turn off behind an edge that reorders headers)"
    )
    tls_header: str | None = Field(
        None, description="header a trusted edge sets to the TLS fingerprint (e.g. x-ja4); trusted proxies only"
    )
    known_tool_fingerprints: dict[str, str] = Field(
        default_factory=dict, description="TLS fingerprint -> tool name; a trailing * matches a prefix"
    )
    browser_fingerprints: tuple[str, ...] = Field(
        (),
        description="TLS fingerprints of real browsers; if set, a Chrome user agent with another one is flagged",
    )

    @field_validator("site_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for o in v:
            norm = _normalize_origin(o.strip().lower().rstrip("/"))
            if norm is None or not _ORIGIN_RE.match(norm):
                raise ValueError(f"not an origin (scheme://host[:port], no path): {o!r}")
            out.append(norm)
        return tuple(out)

    @field_validator("tls_header")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.strip().lower() if v else None


# --------------------------------------------------------------------------------------
# Program fingerprints (browser routes only)
# --------------------------------------------------------------------------------------
_SDK_HEADER_NAMES = frozenset(
    {
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "openai-organization",
        "openai-project",
        "openai-beta",
    }
)

# One alternation, the group name is the tool: a single anchored match per new user
# agent (results are cached per user-agent string, see _ua_profile).
_SDK_AGENTS = {
    "openai_python": r"(?:Async)?OpenAI/Python",
    "anthropic_python": r"(?:Async)?Anthropic/Python",
    "openai_js": r"OpenAI/JS",
    "anthropic_js": r"Anthropic/JS",
    "claude_cli": r"claude-cli",
}
_TOOL_AGENTS = {
    "python_httpx": r"python-httpx2?/",
    "python_requests": r"python-requests/",
    "aiohttp": r"Python/[0-9.]+ aiohttp/|aiohttp/",
    "python_urllib": r"Python-urllib/",
    "curl": r"curl/",
    "wget": r"Wget/",
    "go_http_client": r"Go-http-client/",
    "node": r"(?:node-fetch|undici|node|Deno|Bun)(?:/|$|\s)",
    "axios": r"axios/",
    "okhttp": r"okhttp/",
    "java": r"Java/|Apache-HttpClient/",
    "libwww_perl": r"libwww-perl/",
    "ruby": r"(?:Ruby|Faraday)\b",
    "api_tool": r"(?:PostmanRuntime|insomnia|HTTPie)/",
    "scraper": r"Scrapy/",
}
_AGENT_RE = re.compile(
    "|".join(f"(?P<{name}>{pat})" for name, pat in {**_SDK_AGENTS, **_TOOL_AGENTS}.items()),
    re.IGNORECASE,
)

# --------------------------------------------------------------------------------------
# Browser claims
# --------------------------------------------------------------------------------------
_FIREFOX_RE = re.compile(r"\bFirefox/(\d+)")
_SAFARI_RE = re.compile(r"\bVersion/(\d+)(?:\.\d+)*(?: Mobile/\S+)? Safari/")
_BRAND_RE = re.compile(r'"([^"]*)"\s*;\s*v\s*=\s*"([^"]*)"')
_CHROMIUM_BRANDS = ("Chromium", "Google Chrome", "Microsoft Edge", "Opera", "Brave")

# sec-ch-ua-platform values a Chromium UA's OS token allows. Android's "desktop site"
# mode sends a Linux UA with platform "Android"; Chrome OS UAs say CrOS.
_PLATFORM_OF_UA = (
    ("Android", ("Android",)),
    ("CrOS", ("Chrome OS", "ChromeOS")),
    ("Windows", ("Windows",)),
    ("Macintosh", ("macOS",)),
    ("Linux", ("Linux", "Android", "Chrome OS")),
)

# Fetch Metadata and client hints exist from these versions on.
_MIN_CHROME_HINTS = 90
_MIN_CHROME_FETCH_METADATA = 80
_MIN_FIREFOX_FETCH_METADATA = 90
_MIN_SAFARI_FETCH_METADATA = 17

# Relative order Chromium's fetch() writes (see the module docstring); (earlier, later).
_CHROME_ORDER = (
    ("user-agent", "accept"),
    ("accept", "accept-encoding"),
    ("accept-encoding", "accept-language"),
)
_ORDER_NAMES = ("host", "user-agent", "accept", "accept-encoding", "accept-language")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, default ports dropped; None if not an origin."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or "@" in parts.netloc:
        return None
    netloc = parts.netloc.lower()
    if (parts.scheme == "https" and netloc.endswith(":443")) or (parts.scheme == "http" and netloc.endswith(":80")):
        netloc = netloc.rsplit(":", 1)[0]
    return f"{parts.scheme}://{netloc}"


def origin_of(headers: Mapping[str, str]) -> str | None:
    """The page origin a request names: ``Origin``, else the origin of ``Referer``.

    ``"null"`` (sandboxed frames, file: pages) is returned as is; None when neither is sent.
    """
    origin = headers.get("origin")
    if origin is not None:
        origin = origin.strip().lower()
        return origin if origin == "null" else (_normalize_origin(origin) or origin)
    referer = headers.get("referer")
    if referer:
        try:
            parts = urlsplit(referer.strip())
        except ValueError:
            return referer[:200]
        if parts.scheme and parts.netloc:
            return _normalize_origin(f"{parts.scheme}://{parts.netloc}") or referer[:200]
        return referer[:200]
    return None


def _origin_allowed(origin: str, cfg: ClientSettings, host: str | None) -> bool:
    if origin == "null":
        return False
    if cfg.site_origins:
        if origin in cfg.site_origins:
            return True
        scheme, _, netloc = origin.partition("://")
        for allowed in cfg.site_origins:
            a_scheme, _, a_netloc = allowed.partition("://")
            if a_scheme == scheme and a_netloc.startswith("*.") and netloc.endswith(a_netloc[1:]):
                return True
        return False
    if host is None:
        return False
    netloc = origin.partition("://")[2]
    host = host.strip().lower()
    return netloc == host or netloc == host.removesuffix(":443") or netloc == host.removesuffix(":80")


def _page_allowed(origin: str, cfg: ClientSettings, facts: RequestFacts) -> bool:
    """A page of the site, or of an origin the route lets call it (``cors.origins``,
    docs/browser-sdk.md)."""
    if _origin_allowed(origin, cfg, facts.headers.get("host")):
        return True
    cors = facts.route.cors if facts.route is not None else None
    return cors is not None and origin in cors.origins


def _secure_context(origin: str | None, cfg: ClientSettings) -> bool:
    """Would the browser send client hints and Fetch Metadata? Only to https or localhost.

    Judged from the page origin the request names, else from the configured site
    origins; with neither, a production site is assumed to be served over https.
    """
    ref = origin if origin and origin != "null" else (cfg.site_origins[0] if cfg.site_origins else None)
    if ref is None:
        return True
    scheme, _, netloc = ref.partition("://")
    if scheme == "https":
        return True
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    return host in _LOCAL_HOSTS or host.endswith(".localhost")


def _fingerprint_in(fp: str, patterns: Sequence[str] | Mapping[str, str]) -> str | None:
    if fp in patterns:
        return fp
    for p in patterns:
        if p.endswith("*") and fp.startswith(p[:-1]):
            return p
    return None


def _order_violation(headers: Mapping[str, str]) -> str | None:
    """``headers``: lower-case names in the order each first arrived (RequestFacts.headers)."""
    names = list(headers)
    pos = {n: names.index(n) for n in _ORDER_NAMES if n in headers}
    host = pos.get("host")
    if host is not None and host != 0:
        return "host is not the first header"
    for earlier, later in _CHROME_ORDER:
        a, b = pos.get(earlier), pos.get(later)
        if a is not None and b is not None and a > b:
            return f"{later} before {earlier}"
    return None


def _major_after(ua: str, token: str) -> int | None:
    i = ua.find(token)
    if i < 0:
        return None
    i += len(token)
    j = i
    while j < len(ua) and j - i < 5 and ua[j].isdigit():
        j += 1
    return int(ua[i:j]) if j > i else None


def chrome_major(ua: str) -> int | None:
    """The Chromium major version a user agent claims (None: not Chromium, or Chrome on iOS)."""
    if "CriOS/" in ua:
        return None
    major = _major_after(ua, "Chrome/")  # also HeadlessChrome/
    return major if major is not None else _major_after(ua, "Chromium/")


@dataclass(frozen=True, slots=True)
class _UAProfile:
    browser: bool  # claims to be a browser (Mozilla/5.0 (...)
    tool: str | None  # SDK or library name, for non-browser agents
    sdk: bool
    chrome: int | None
    fetch_metadata: bool  # this browser version sends Sec-Fetch-* (to secure contexts)


@lru_cache(maxsize=4096)
def _ua_profile(ua: str) -> _UAProfile:
    """Everything derived from the user agent alone, cached: real traffic repeats a few
    thousand user agents, and a flood of random ones only costs the uncached path."""
    if not ua.startswith("Mozilla/5.0 ("):
        m = _AGENT_RE.match(ua)
        tool = (m.lastgroup or "?") if m else None
        return _UAProfile(False, tool.replace("_", "-") if tool else None, tool in _SDK_AGENTS, None, False)
    major = chrome_major(ua)
    if major is not None:
        fetch_metadata = major >= _MIN_CHROME_FETCH_METADATA
    else:
        firefox = _FIREFOX_RE.search(ua)
        if firefox is not None:
            fetch_metadata = int(firefox.group(1)) >= _MIN_FIREFOX_FETCH_METADATA
        else:
            safari = _SAFARI_RE.search(ua)
            fetch_metadata = safari is not None and int(safari.group(1)) >= _MIN_SAFARI_FETCH_METADATA
    return _UAProfile(True, None, False, major, fetch_metadata)


@lru_cache(maxsize=1024)
def _brands(sec_ch_ua: str) -> dict[str, str]:
    return dict(_BRAND_RE.findall(sec_ch_ua))


def platform_matches(ua: str, platform: str) -> bool | None:
    """Does a client-hints platform (``"Windows"``, ``"macOS"``...) fit the user agent's OS?
    None when the user agent names no OS this knows."""
    for token, allowed in _PLATFORM_OF_UA:
        if token in ua:
            return platform in allowed
    return None


def _hints_mismatch(ua: str, major: int | None, headers: Mapping[str, str]) -> list[str]:
    reasons: list[str] = []
    sec_ch_ua = headers.get("sec-ch-ua")
    if major is None:
        if sec_ch_ua is not None:
            reasons.append("client hints from a non-Chromium user agent")
        return reasons
    if sec_ch_ua is not None:
        brands = _brands(sec_ch_ua)
        if brands:
            version = next((brands[b] for b in _CHROMIUM_BRANDS if b in brands), None)
            if version is None:
                reasons.append("no Chromium brand in sec-ch-ua")
            elif version.split(".", 1)[0] != str(major):
                reasons.append(f"sec-ch-ua version {version} vs user agent {major}")
        else:
            reasons.append("unparsable sec-ch-ua")
    platform = headers.get("sec-ch-ua-platform")
    if platform is not None:
        platform = platform.strip().strip('"')
        if platform_matches(ua, platform) is False:
            reasons.append(f"sec-ch-ua-platform {platform} vs user agent OS")
    return reasons


def _sdk_headers(headers: Mapping[str, str]) -> list[str]:
    """Headers only API SDKs send (``x-stainless-*``, ``anthropic-version``...), sorted."""
    return sorted(n for n in headers if n.startswith("x-stainless-") or n in _SDK_HEADER_NAMES)


def _agent_signal(ua: str, profile: _UAProfile) -> Signal | None:
    """A browser route called with no user agent, an SDK's or a tool's, or anything not a browser's."""
    if not ua:
        return Signal("client/no-user-agent", _W["client/no-user-agent"], {})
    if profile.tool is not None:
        name = "client/sdk-agent" if profile.sdk else "client/tool-agent"
        return Signal(name, _W[name], {"tool": profile.tool, "ua": ua[:120]})
    if not profile.browser:
        return Signal("client/not-a-browser", _W["client/not-a-browser"], {"ua": ua[:120]})
    return None


def _tls_tool_signal(tls_fp: str, cfg: ClientSettings) -> Signal | None:
    hit = _fingerprint_in(tls_fp, cfg.known_tool_fingerprints)
    if hit is None:
        return None
    tool = cfg.known_tool_fingerprints[hit]
    return Signal("client/tls-tool", _W["client/tls-tool"], {"fingerprint": tls_fp, "tool": tool})


def _missing_fetch_metadata(site: str | None, mode: str | None, dest: str | None) -> list[str]:
    if site is not None and mode is not None and dest is not None:
        return []
    return [n for n, v in (("sec-fetch-site", site), ("sec-fetch-mode", mode), ("sec-fetch-dest", dest)) if v is None]


def _not_a_page_fetch(site: str | None, mode: str | None, dest: str | None) -> bool:
    """A page's fetch() is mode cors/same-origin, dest empty; navigate/document is a page
    load (what curl_cffi's Chrome impersonation sends by default)."""
    return mode == "navigate" or site == "none" or (dest is not None and dest != "empty")


def client_signals(
    facts: RequestFacts,
    cfg: ClientSettings,
    *,
    browser_route: bool,
    via_trusted_proxy: bool = False,
) -> list[Signal]:
    """Signals from the request headers.

    ``browser_route``: the route is meant for the site's own pages (SDK and tool
    fingerprints, the Origin check and TLS tool fingerprints only run there).
    ``via_trusted_proxy``: the TCP peer is one of the policy's trusted proxies, so a
    header the edge sets (``cfg.tls_header``) can be believed.
    """
    headers = facts.headers
    out: list[Signal] = []
    ua = headers.get("user-agent", "").strip()
    profile = _ua_profile(ua)
    origin = origin_of(headers)
    tls_fp = headers.get(cfg.tls_header) if cfg.tls_header is not None and via_trusted_proxy else None

    # ---- which program? (browser routes only) ------------------------------------------
    if browser_route:
        if sdk_headers := _sdk_headers(headers):
            out.append(Signal("client/sdk-header", _W["client/sdk-header"], {"headers": sdk_headers[:8]}))
        if (signal := _agent_signal(ua, profile)) is not None:
            out.append(signal)
        if origin is not None and not _page_allowed(origin, cfg, facts):
            out.append(Signal("client/origin-mismatch", _W["client/origin-mismatch"], {"origin": origin[:200]}))
        if tls_fp is not None and (signal := _tls_tool_signal(tls_fp, cfg)) is not None:
            out.append(signal)
    if not profile.browser:
        return out

    # ---- a browser is claimed: check that it looks like one ----------------------------
    major = profile.chrome
    secure = _secure_context(origin, cfg)
    if reasons := _hints_mismatch(ua, major, headers):
        out.append(Signal("client/ua-hints-mismatch", _W["client/ua-hints-mismatch"], {"reasons": reasons}))
    if major is not None and major >= _MIN_CHROME_HINTS and secure and "sec-ch-ua" not in headers:
        out.append(Signal("client/ua-no-client-hints", _W["client/ua-no-client-hints"], {"chrome": major}))
    site, mode, dest = headers.get("sec-fetch-site"), headers.get("sec-fetch-mode"), headers.get("sec-fetch-dest")
    if secure and profile.fetch_metadata and (missing := _missing_fetch_metadata(site, mode, dest)):
        out.append(Signal("client/fetch-metadata-missing", _W["client/fetch-metadata-missing"], {"missing": missing}))
    if _not_a_page_fetch(site, mode, dest):
        evidence = {"site": site, "mode": mode, "dest": dest}
        out.append(Signal("client/fetch-metadata-mismatch", _W["client/fetch-metadata-mismatch"], evidence))
    if "accept-language" not in headers:
        out.append(Signal("client/no-accept-language", _W["client/no-accept-language"], {}))
    if browser_route and origin is None and facts.method not in _NO_BODY_METHODS:
        out.append(Signal("client/origin-missing", _W["client/origin-missing"], {"method": facts.method}))
    if major is not None and cfg.header_order and (violation := _order_violation(headers)) is not None:
        out.append(Signal("client/header-order", _W["client/header-order"], {"rule": violation}))
    if major is not None and tls_fp is not None and cfg.browser_fingerprints:
        if _fingerprint_in(tls_fp, cfg.browser_fingerprints) is None:
            out.append(Signal("client/tls-not-browser", _W["client/tls-not-browser"], {"fingerprint": tls_fp}))
    return out
