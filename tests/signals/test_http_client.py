"""client_signals on requests captured from real clients, plus edge cases on crafted ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from tokenward.decision import Signal
from tokenward.facts import RequestFacts
from tokenward.signals.http_client import CLIENT_WEIGHTS, ClientSettings, client_signals, origin_of

from .conftest import Captured

DEFAULT = ClientSettings()

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"


def names(signals: list[Signal]) -> set[str]:
    return {s.name for s in signals}


def crafted(headers: list[tuple[str, str]], *, method: str = "POST") -> RequestFacts:
    raw = tuple((k.lower().encode(), v.encode()) for k, v in headers)
    return RequestFacts(
        request_id="t",
        received_at=0.0,
        method=method,
        path="/api/chat",
        client_ip="198.51.100.7",
        headers={k.lower(): v for k, v in headers},
        raw_headers=raw,
        body=b"{}",
        route=None,
    )


# A Chrome fetch() from https://chat.example.com, header order as captured from Chromium.
CHROME_FETCH = [
    ("host", "chat.example.com"),
    ("connection", "keep-alive"),
    ("content-length", "2"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("user-agent", CHROME_UA),
    ("sec-ch-ua", '"Chromium";v="156", "Google Chrome";v="156", "Not:A-Brand";v="8"'),
    ("content-type", "application/json"),
    ("sec-ch-ua-mobile", "?0"),
    ("accept", "*/*"),
    ("origin", "https://chat.example.com"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("referer", "https://chat.example.com/"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "de-DE,de;q=0.9,en;q=0.8"),
]


def edit(headers: list[tuple[str, str]], **changes: Any) -> list[tuple[str, str]]:
    """Replace (value), drop (None) headers by name (underscores for dashes)."""
    wanted = {k.replace("_", "-"): v for k, v in changes.items()}
    return [(k, wanted.get(k, v)) for k, v in headers if wanted.get(k, v) is not None]


# --------------------------------------------------------------------------------------
# Real captures
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("openai", {"client/sdk-header", "client/sdk-agent"}),
        ("openai-async", {"client/sdk-header", "client/sdk-agent"}),
        ("anthropic", {"client/sdk-header", "client/sdk-agent"}),
        ("httpx", {"client/tool-agent"}),
        ("requests", {"client/tool-agent"}),
        ("aiohttp", {"client/tool-agent"}),
        ("curl", {"client/tool-agent"}),
        ("node", {"client/tool-agent"}),
    ],
)
def test_sdks_and_libraries_are_named_on_browser_routes(captured: Captured, label: str, expected: set[str]) -> None:
    facts = captured.one(label).facts()
    signals = client_signals(facts, DEFAULT, browser_route=True)
    assert names(signals) == expected
    assert sum(s.score for s in signals) >= 4  # with browser/no-signals (3): throttle or block


def test_sdk_evidence_names_the_tool(captured: Captured) -> None:
    by_name = {s.name: s for s in client_signals(captured.one("anthropic").facts(), DEFAULT, browser_route=True)}
    assert by_name["client/sdk-agent"].evidence["tool"] == "anthropic-python"
    assert "anthropic-version" in by_name["client/sdk-header"].evidence["headers"]
    tool = next(iter(client_signals(captured.one("httpx").facts(), DEFAULT, browser_route=True))).evidence["tool"]
    assert tool == "python-httpx"


@pytest.mark.parametrize("label", ["openai", "anthropic", "httpx", "requests", "aiohttp", "curl", "node"])
def test_server_routes_get_no_fingerprint_signals(captured: Captured, label: str) -> None:
    assert client_signals(captured.one(label).facts(), DEFAULT, browser_route=False) == []


def test_curl_cffi_chrome_impersonation_is_not_a_page_fetch(captured: Captured) -> None:
    """Browser TLS and browser-looking headers, but a page load's Fetch Metadata on an
    API POST, no Origin, and Host written last (Chromium writes it first)."""
    facts = captured.one("curl-cffi").facts()
    assert "Chrome/" in facts.headers["user-agent"] and "sec-ch-ua" in facts.headers
    signals = client_signals(facts, DEFAULT, browser_route=True)
    assert names(signals) == {"client/fetch-metadata-mismatch", "client/origin-missing", "client/header-order"}
    order = next(s for s in signals if s.name == "client/header-order")
    assert order.evidence["rule"] == "host is not the first header"
    # The claimed-browser checks hold on server routes too: a lie is a lie everywhere.
    assert names(client_signals(facts, DEFAULT, browser_route=False)) == {
        "client/fetch-metadata-mismatch",
        "client/header-order",
    }


@pytest.mark.parametrize("profile", ["headless", "headed"])
def test_real_chromium_fetch_is_clean(captured: Captured, browsers: dict, profile: str) -> None:
    for cap in captured.all(profile) + captured.all(f"{profile}-scripted"):
        assert client_signals(cap.facts(), DEFAULT, browser_route=True) == []


def test_chromium_header_order_as_captured(captured: Captured, browsers: dict) -> None:
    """The rules of the header-order check, read off a real Chromium fetch()."""
    order = captured.one("headed").names
    assert order[0] == "host"
    assert order.index("user-agent") < order.index("accept") < order.index("accept-encoding")
    assert order.index("accept-encoding") < order.index("accept-language")
    # ...and the python clients break them.
    httpx_order = captured.one("httpx").names
    assert httpx_order.index("accept") < httpx_order.index("user-agent")
    requests_order = captured.one("requests").names
    assert requests_order.index("accept-encoding") < requests_order.index("accept")


def test_header_order_applies_to_python_clients_faking_chrome(captured: Captured) -> None:
    """A python client that only swaps its user agent for Chrome's is caught by order,
    missing client hints, Fetch Metadata, Origin and accept-language."""
    for label in ("httpx", "requests", "aiohttp", "openai"):
        cap = captured.one(label)
        raw = [(k, CHROME_UA.encode() if k.lower() == b"user-agent" else v) for k, v in cap.raw_headers]
        facts = replace(cap.facts(), raw_headers=tuple(raw), headers={**cap.facts().headers, "user-agent": CHROME_UA})
        got = names(client_signals(facts, DEFAULT, browser_route=True))
        assert {"client/ua-no-client-hints", "client/fetch-metadata-missing", "client/origin-missing"} <= got, label
        assert {"client/no-accept-language", "client/header-order"} <= got, label


def test_origin_from_the_real_page_matches_its_host(captured: Captured, browsers: dict) -> None:
    facts = captured.one("headed").facts()
    assert origin_of(facts.headers) == facts.headers["origin"]
    other = ClientSettings(site_origins=("https://chat.example.com",))
    assert names(client_signals(facts, other, browser_route=True)) == {"client/origin-mismatch"}


# --------------------------------------------------------------------------------------
# Crafted edge cases
# --------------------------------------------------------------------------------------
def test_crafted_chrome_fetch_is_clean() -> None:
    assert client_signals(crafted(CHROME_FETCH), DEFAULT, browser_route=True) == []
    cfg = ClientSettings(site_origins=("https://*.example.com",))
    assert client_signals(crafted(CHROME_FETCH), cfg, browser_route=True) == []


def test_client_hints_must_agree_with_the_user_agent() -> None:
    old = edit(CHROME_FETCH, sec_ch_ua='"Chromium";v="120", "Google Chrome";v="120", "Not:A-Brand";v="8"')
    sig = client_signals(crafted(old), DEFAULT, browser_route=True)
    assert names(sig) == {"client/ua-hints-mismatch"}
    assert "120" in sig[0].evidence["reasons"][0]
    mac = edit(CHROME_FETCH, sec_ch_ua_platform='"macOS"')
    assert names(client_signals(crafted(mac), DEFAULT, browser_route=True)) == {"client/ua-hints-mismatch"}
    no_hints = edit(CHROME_FETCH, sec_ch_ua=None, sec_ch_ua_platform=None, sec_ch_ua_mobile=None)
    assert names(client_signals(crafted(no_hints), DEFAULT, browser_route=True)) == {"client/ua-no-client-hints"}


def test_android_desktop_mode_is_not_a_platform_mismatch() -> None:
    linux_ua = CHROME_UA.replace("Windows NT 10.0; Win64; x64", "X11; Linux x86_64")
    h = edit(CHROME_FETCH, user_agent=linux_ua, sec_ch_ua_platform='"Android"')
    assert client_signals(crafted(h), DEFAULT, browser_route=True) == []


def test_firefox_sends_no_client_hints_and_its_own_order() -> None:
    firefox = [
        ("host", "chat.example.com"),
        ("user-agent", FIREFOX_UA),
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("content-type", "application/json"),
        ("content-length", "2"),
        ("origin", "https://chat.example.com"),
        ("sec-fetch-dest", "empty"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-origin"),
    ]
    assert client_signals(crafted(firefox), DEFAULT, browser_route=True) == []
    forged = [*firefox, ("sec-ch-ua", '"Chromium";v="156"')]
    assert names(client_signals(crafted(forged), DEFAULT, browser_route=True)) == {"client/ua-hints-mismatch"}


def test_chrome_on_ios_is_webkit() -> None:
    ua = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/156.0.0.0 Mobile/15E148 Safari/604.1"
    )
    h = edit(CHROME_FETCH, user_agent=ua, sec_ch_ua=None, sec_ch_ua_platform=None, sec_ch_ua_mobile=None)
    assert client_signals(crafted(h), DEFAULT, browser_route=True) == []


def test_fetch_metadata() -> None:
    missing = edit(CHROME_FETCH, sec_fetch_site=None, sec_fetch_mode=None, sec_fetch_dest=None)
    sig = client_signals(crafted(missing), DEFAULT, browser_route=True)
    assert names(sig) == {"client/fetch-metadata-missing"}
    assert sig[0].evidence["missing"] == ["sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest"]
    navigate = edit(CHROME_FETCH, sec_fetch_mode="navigate", sec_fetch_dest="document")
    assert names(client_signals(crafted(navigate), DEFAULT, browser_route=True)) == {"client/fetch-metadata-mismatch"}


def test_plain_http_pages_get_no_client_hints_or_fetch_metadata() -> None:
    """Browsers send them only to https and localhost: a plain-http site is not penalised."""
    h = edit(
        CHROME_FETCH,
        origin="http://intranet.example",
        referer="http://intranet.example/",
        host="intranet.example",
        sec_ch_ua=None,
        sec_ch_ua_platform=None,
        sec_ch_ua_mobile=None,
        sec_fetch_site=None,
        sec_fetch_mode=None,
        sec_fetch_dest=None,
    )
    assert client_signals(crafted(h), DEFAULT, browser_route=True) == []


def test_origin_checks() -> None:
    cfg = ClientSettings(site_origins=("https://chat.example.com", "https://*.example.org"))
    foreign = edit(CHROME_FETCH, origin="https://evil.example.net", referer=None)
    sig = client_signals(crafted(foreign), cfg, browser_route=True)
    assert names(sig) == {"client/origin-mismatch"}
    assert sig[0].evidence["origin"] == "https://evil.example.net"
    sub = edit(CHROME_FETCH, origin="https://eu.example.org")
    assert client_signals(crafted(sub), cfg, browser_route=True) == []
    bare = edit(CHROME_FETCH, origin="https://example.org")  # *.example.org is subdomains only
    assert names(client_signals(crafted(bare), cfg, browser_route=True)) == {"client/origin-mismatch"}
    null = edit(CHROME_FETCH, origin="null")
    assert names(client_signals(crafted(null), cfg, browser_route=True)) == {"client/origin-mismatch"}
    # Without Origin, the Referer's origin is checked; without either, a POST is odd.
    ref_only = edit(CHROME_FETCH, origin=None, referer="https://evil.example.net/page?q=1")
    assert names(client_signals(crafted(ref_only), cfg, browser_route=True)) == {"client/origin-mismatch"}
    neither = edit(CHROME_FETCH, origin=None, referer=None)
    assert names(client_signals(crafted(neither), cfg, browser_route=True)) == {"client/origin-missing"}
    assert client_signals(crafted(neither, method="GET"), cfg, browser_route=True) == []
    # Default ports are the same origin.
    port = edit(CHROME_FETCH, origin="https://chat.example.com:443")
    assert client_signals(crafted(port), cfg, browser_route=True) == []


def test_no_user_agent_and_unknown_agents() -> None:
    bare = [("host", "chat.example.com"), ("content-type", "application/json")]
    assert names(client_signals(crafted(bare), DEFAULT, browser_route=True)) == {"client/no-user-agent"}
    custom = [*bare, ("user-agent", "MyScraper 2.0")]
    assert names(client_signals(crafted(custom), DEFAULT, browser_route=True)) == {"client/not-a-browser"}
    cli = [*bare, ("user-agent", "claude-cli/1.0.83 (external, cli)")]
    sig = client_signals(crafted(cli), DEFAULT, browser_route=True)
    assert names(sig) == {"client/sdk-agent"} and sig[0].evidence["tool"] == "claude-cli"
    for ua, tool in [
        ("Go-http-client/1.1", "go-http-client"),
        ("axios/1.7.2", "axios"),
        ("okhttp/4.12.0", "okhttp"),
        ("Java/21.0.2", "java"),
        ("libwww-perl/6.72", "libwww-perl"),
        ("undici", "node"),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "node"),
        ("python-httpx2/2.16.2", "python-httpx"),
    ]:
        sig = client_signals(crafted([*bare, ("user-agent", ua)]), DEFAULT, browser_route=True)
        assert [(s.name, s.evidence["tool"]) for s in sig] == [("client/tool-agent", tool)], ua


def test_forged_stainless_headers_on_a_chrome_request() -> None:
    forged = [*CHROME_FETCH, ("x-stainless-lang", "js"), ("x-stainless-os", "Windows")]
    sig = client_signals(crafted(forged), DEFAULT, browser_route=True)
    assert names(sig) == {"client/sdk-header"}
    assert sig[0].evidence["headers"] == ["x-stainless-lang", "x-stainless-os"]


def test_header_order_can_be_turned_off() -> None:
    h = [CHROME_FETCH[1], CHROME_FETCH[0], *CHROME_FETCH[2:]]
    assert names(client_signals(crafted(h), DEFAULT, browser_route=True)) == {"client/header-order"}
    assert client_signals(crafted(h), ClientSettings(header_order=False), browser_route=True) == []


def test_tls_fingerprint_only_from_a_trusted_edge() -> None:
    cfg = ClientSettings(
        tls_header="X-JA4",
        known_tool_fingerprints={"t13d1516h2_8daaf6152771_e5627efa2ab1": "curl", "t13d3112h2_*": "python-requests"},
        browser_fingerprints=("t13d1516h2_8daaf6152771_02713d6af862",),
    )
    chrome_fp = [*CHROME_FETCH, ("x-ja4", "t13d1516h2_8daaf6152771_02713d6af862")]
    assert client_signals(crafted(chrome_fp), cfg, browser_route=True, via_trusted_proxy=True) == []
    tool_fp = [*CHROME_FETCH, ("x-ja4", "t13d1516h2_8daaf6152771_e5627efa2ab1")]
    sig = client_signals(crafted(tool_fp), cfg, browser_route=True, via_trusted_proxy=True)
    assert names(sig) == {"client/tls-tool", "client/tls-not-browser"}
    assert next(s for s in sig if s.name == "client/tls-tool").evidence["tool"] == "curl"
    prefix = [*CHROME_FETCH, ("x-ja4", "t13d3112h2_e8f1e7e78f70_6bebaf5329ac")]
    assert "client/tls-tool" in names(client_signals(crafted(prefix), cfg, browser_route=True, via_trusted_proxy=True))
    # The same header straight from a client is not believed.
    assert client_signals(crafted(tool_fp), cfg, browser_route=True, via_trusted_proxy=False) == []


def test_settings_validate() -> None:
    assert ClientSettings(site_origins=("HTTPS://Chat.Example.com/",)).site_origins == ("https://chat.example.com",)
    assert ClientSettings(site_origins=("https://chat.example.com:443",)).site_origins == ("https://chat.example.com",)
    with pytest.raises(ValidationError):
        ClientSettings(site_origins=("https://chat.example.com/app",))
    with pytest.raises(ValidationError):
        ClientSettings(site_origins=("chat.example.com",))
    with pytest.raises(ValidationError):
        ClientSettings(unknown=1)  # type: ignore[call-arg]


def test_every_emitted_name_has_a_default_weight() -> None:
    for name, weight in CLIENT_WEIGHTS.items():
        assert name.startswith("client/") and weight > 0
