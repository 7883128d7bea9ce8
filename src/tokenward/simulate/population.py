"""Who the simulated clients are: addresses, browsers, accounts and what they ask.

Everything here is deterministic for a given ``random.Random``: a run with the same seed
meets the same people. Nothing here does I/O.

* **Addresses.** Simulated clients are told apart by the address the gateway reads from
  ``X-Forwarded-For`` (the simulator is the gateway's trusted loopback proxy). Legit users
  and the attackers' residential-proxy exits are drawn from two disjoint halves of the
  carrier-grade NAT range 100.64.0.0/10 — the space residential ISPs really hand out — so
  no address list tells them apart; only what they do does. The strings never leave the
  header: no packet is ever sent to them.
* **Browsers.** A persona is one consistent browser: user agent, client hints, header
  order, screen, WebGL, time zone, languages — the fields docs/protocol.md §4.1 lists.
* **Accounts.** JWTs minted with the simulation's key: established customers, people who
  signed up today, and throwaway accounts on disposable-mail domains.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jwt

__all__ = [
    "ATTACK_NET",
    "LEGIT_NET",
    "Account",
    "AccountMint",
    "IpPool",
    "Persona",
    "browser_fetch_headers",
    "coding_payload",
    "disposable_domains",
    "legit_question",
    "make_persona",
    "signals_value",
]

LEGIT_NET = "100.64.0.0/11"  # 100.64.0.0 - 100.95.255.255: legit users' ISPs
ATTACK_NET = "100.96.0.0/11"  # 100.96.0.0 - 100.127.255.255: the residential proxy pool's exits


# --------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------
class IpPool:
    """``size`` addresses spread over ``subnets`` distinct /24s of ``network``."""

    def __init__(self, rng: random.Random, network: str, size: int, subnets: int):
        net = ipaddress.ip_network(network)
        if net.version != 4 or net.prefixlen > 24:
            raise ValueError(f"an IPv4 network of /24 or larger is needed: {network}")
        n24 = 1 << (24 - net.prefixlen)
        subnets = max(1, min(subnets, n24, size))
        base = int(net.network_address)
        chosen = rng.sample(range(n24), subnets)
        addresses: set[str] = set()
        while len(addresses) < size:
            block = chosen[len(addresses) % subnets]
            host = rng.randrange(2, 254)
            addresses.add(str(ipaddress.IPv4Address(base + (block << 8) + host)))
        self.addresses: list[str] = sorted(addresses, key=lambda a: int(ipaddress.IPv4Address(a)))
        rng.shuffle(self.addresses)
        self.subnets = subnets

    def __len__(self) -> int:
        return len(self.addresses)

    def pick(self, rng: random.Random) -> str:
        return rng.choice(self.addresses)


# --------------------------------------------------------------------------------------
# Browsers
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Persona:
    """One consistent browser on one machine."""

    family: str  # chrome | edge | firefox | safari
    ua: str
    brands: tuple[tuple[str, str], ...]  # userAgentData brands (Chromium only)
    platform: str  # userAgentData platform ("" when the browser has none)
    screen: tuple[int, int, int, int, int, float]  # w, h, availW, availH, colorDepth, dpr
    viewport: tuple[int, int, int, int]  # innerW, innerH, outerW, outerH
    gl: tuple[str, str]  # vendor, renderer
    timezone: str
    languages: tuple[str, ...]
    accept_language: str
    hardware_concurrency: int
    device_memory: float | None
    hash_rate: float  # hashes/s this browser's SDK reaches (paces the HTTP-level model)

    @property
    def chromium(self) -> bool:
        return self.family in ("chrome", "edge")

    def client_hints(self) -> list[tuple[str, str]]:
        if not self.chromium:
            return []
        brands = ", ".join(f'"{b}";v="{v}"' for b, v in self.brands)
        return [("sec-ch-ua", brands), ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", f'"{self.platform}"')]

    def tz_offset(self, now: float) -> int:
        """``new Date().getTimezoneOffset()`` at ``now`` (minutes, west of UTC positive)."""
        offset = datetime.fromtimestamp(now, ZoneInfo(self.timezone)).utcoffset()
        return -int(offset.total_seconds() // 60) if offset is not None else 0


_OS = {
    "windows": ("Windows NT 10.0; Win64; x64", "Windows"),
    "mac": ("Macintosh; Intel Mac OS X 10_15_7", "macOS"),
    "linux": ("X11; Linux x86_64", "Linux"),
}
_GREASE = {150: "Not?A_Brand", 151: "Not/A)Brand", 152: "Not.A/Brand", 153: "Not_A Brand",
           154: "Not)A;Brand", 155: "Not:A-Brand", 156: "Not-A.Brand"}  # fmt: skip
_SCREENS = {
    "windows": [(1920, 1080, 1920, 1032, 24, 1.0), (1536, 864, 1536, 816, 24, 1.25), (2560, 1440, 2560, 1392, 24, 1.0),
                (1366, 768, 1366, 728, 24, 1.0)],
    "mac": [(1440, 900, 1440, 875, 30, 2.0), (1512, 982, 1512, 944, 30, 2.0), (1728, 1117, 1728, 1079, 30, 2.0)],
    "linux": [(1920, 1080, 1920, 1053, 24, 1.0), (2560, 1440, 2560, 1413, 24, 1.0)],
}  # fmt: skip
_GPUS = {
    "windows": [
        (
            "Google Inc. (NVIDIA)",
            "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 (0x00002504) Direct3D11 vs_5_0 ps_5_0, D3D11)",
        ),
        (
            "Google Inc. (Intel)",
            "ANGLE (Intel, Intel(R) UHD Graphics 620 (0x00005917) Direct3D11 vs_5_0 ps_5_0, D3D11)",
        ),
        ("Google Inc. (AMD)", "ANGLE (AMD, AMD Radeon(TM) Graphics (0x00001638) Direct3D11 vs_5_0 ps_5_0, D3D11)"),
    ],
    "mac": [
        ("Google Inc. (Apple)", "ANGLE (Apple, ANGLE Metal Renderer: Apple M1, Unspecified Version)"),
        ("Google Inc. (Apple)", "ANGLE (Apple, ANGLE Metal Renderer: Apple M2 Pro, Unspecified Version)"),
    ],
    "linux": [("Google Inc. (Intel)", "ANGLE (Intel, Mesa Intel(R) Xe Graphics (TGL GT2), OpenGL 4.6)")],
}
_LOCALES = [  # (time zone, languages, Accept-Language), weighted by repetition
    ("America/New_York", ("en-US", "en"), "en-US,en;q=0.9"),
    ("America/New_York", ("en-US", "en"), "en-US,en;q=0.9"),
    ("America/Chicago", ("en-US", "en"), "en-US,en;q=0.9"),
    ("America/Los_Angeles", ("en-US", "en"), "en-US,en;q=0.9"),
    ("Europe/London", ("en-GB", "en"), "en-GB,en;q=0.9"),
    ("Europe/Berlin", ("de-DE", "de", "en-US", "en"), "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7"),
    ("Europe/Paris", ("fr-FR", "fr", "en-US", "en"), "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
    ("America/Sao_Paulo", ("pt-BR", "pt", "en"), "pt-BR,pt;q=0.9,en;q=0.8"),
    ("Asia/Kolkata", ("en-IN", "en"), "en-IN,en;q=0.9"),
    ("Asia/Tokyo", ("ja", "en-US", "en"), "ja,en-US;q=0.9,en;q=0.8"),
]


def make_persona(rng: random.Random, *, chrome_major: int = 156) -> Persona:
    """A browser as real users run them: mostly Chrome, some Edge, Firefox and Safari."""
    family = rng.choices(["chrome", "edge", "firefox", "safari"], weights=[64, 12, 12, 12])[0]
    os_name = "mac" if family == "safari" else rng.choices(["windows", "mac", "linux"], weights=[62, 30, 8])[0]
    if family == "edge" and os_name == "linux":
        os_name = "windows"
    token, platform = _OS[os_name]
    tz, langs, accept_language = rng.choice(_LOCALES)
    screen = rng.choice(_SCREENS[os_name])
    # A window a little smaller than the screen's available area, with browser UI above.
    outer_w = min(screen[2], rng.choice([screen[2], screen[2], screen[2] - rng.randrange(80, 400)]))
    outer_h = min(screen[3], screen[3] - rng.choice([0, 0, rng.randrange(40, 200)]))
    viewport = (outer_w - (16 if os_name == "windows" else 0), outer_h - rng.randrange(85, 140), outer_w, outer_h)
    major = chrome_major - rng.choice([0, 0, 0, 1, 1, 2, 3])
    brands: tuple[tuple[str, str], ...] = ()
    if family == "chrome":
        ua = f"Mozilla/5.0 ({token}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"
        brands = (("Chromium", str(major)), (_GREASE.get(major, "Not.A/Brand"), "24"), ("Google Chrome", str(major)))
        gl = rng.choice(_GPUS[os_name])
    elif family == "edge":
        ua = (
            f"Mozilla/5.0 ({token}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36 "
            f"Edg/{major}.0.0.0"
        )
        brands = (("Microsoft Edge", str(major)), (_GREASE.get(major, "Not.A/Brand"), "24"), ("Chromium", str(major)))
        gl = rng.choice(_GPUS[os_name])
    elif family == "firefox":
        ff = 140 + rng.randrange(0, 6)
        ff_token = token.replace("Intel Mac OS X 10_15_7", "Intel Mac OS X 10.15")
        ua = f"Mozilla/5.0 ({ff_token}; rv:{ff}.0) Gecko/20100101 Firefox/{ff}.0"
        platform = ""
        gl = ("Mozilla", "Mozilla")
    else:
        version = rng.choice(["18.5", "18.6", "26.0"])
        ua = f"Mozilla/5.0 ({token}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{version} Safari/605.1.15"
        platform = ""
        gl = ("Apple Inc.", "Apple GPU")
    return Persona(
        family=family,
        ua=ua,
        brands=brands,
        platform=platform,
        screen=screen,
        viewport=viewport,
        gl=gl,
        timezone=tz,
        languages=langs,
        accept_language=accept_language,
        hardware_concurrency=rng.choice([4, 8, 8, 12, 16]),
        device_memory=8.0 if family in ("chrome", "edge") else None,
        # The SDK's two workers: 1.3-4M hashes/s measured on a 2-core VM; phones and old
        # laptops are slower, desktops faster.
        hash_rate=rng.lognormvariate(14.5, 0.45),
    )


def browser_fetch_headers(
    persona: Persona,
    origin: str,
    referer: str,
    *,
    proof: str | None = None,
    signals: str | None = None,
    device: str | None = None,
    cookie: str | None = None,
    content_type: str = "application/json",
) -> list[tuple[str, str]]:
    """The headers a page's ``fetch()`` POST sends, in the browser's own order (Host and
    Content-Length are written by the HTTP client)."""
    tw = [(k, v) for k, v in (("Tokenward-Proof", proof), ("Tokenward-Signals", signals),
                              ("Tokenward-Device", device)) if v is not None]  # fmt: skip
    if persona.chromium:
        hints = dict(persona.client_hints())
        out = [("Connection", "keep-alive"), ("sec-ch-ua-platform", hints["sec-ch-ua-platform"])]
        out += [t for t in tw if t[0] == "Tokenward-Signals"]
        out += [("sec-ch-ua", hints["sec-ch-ua"]), ("sec-ch-ua-mobile", "?0")]
        out += [t for t in tw if t[0] != "Tokenward-Signals"]
        out += [
            ("User-Agent", persona.ua),
            ("content-type", content_type),
            ("Accept", "*/*"),
            ("Origin", origin),
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Dest", "empty"),
            ("Referer", referer),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Accept-Language", persona.accept_language),
        ]
    elif persona.family == "firefox":
        out = [
            ("User-Agent", persona.ua),
            ("Accept", "*/*"),
            ("Accept-Language", persona.accept_language),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Referer", referer),
            ("content-type", content_type),
            *tw,
            ("Origin", origin),
            ("Connection", "keep-alive"),
            ("Sec-Fetch-Dest", "empty"),
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Site", "same-origin"),
            ("Priority", "u=4"),
        ]
    else:  # Safari
        out = [
            ("Accept", "*/*"),
            ("content-type", content_type),
            *tw,
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", origin),
            ("Sec-Fetch-Mode", "cors"),
            ("User-Agent", persona.ua),
            ("Referer", referer),
            ("Sec-Fetch-Dest", "empty"),
            ("Accept-Language", persona.accept_language),
            ("Priority", "u=3, i"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Connection", "keep-alive"),
        ]
    if cookie is not None:
        out.append(("Cookie", cookie))
    return out


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signals_value(
    persona: Persona,
    *,
    now: float,
    input_counts: dict[str, int] | None = None,
    prev: dict[str, int] | None = None,
) -> str:
    """The ``Tokenward-Signals`` value the SDK would build on this persona's page."""
    report: dict[str, Any] = {"v": 1, "wd": False, "ua": persona.ua}
    if persona.chromium:
        report["uad"] = {
            "brands": [{"brand": b, "version": v} for b, v in persona.brands],
            "mobile": False,
            "platform": persona.platform,
        }
    report["gl"] = {"vendor": persona.gl[0], "renderer": persona.gl[1]}
    report["scr"] = list(persona.screen)
    report["vp"] = list(persona.viewport)
    report["tz"] = persona.timezone
    report["tzo"] = persona.tz_offset(now)
    report["langs"] = list(persona.languages)
    report["hc"] = persona.hardware_concurrency
    if persona.device_memory is not None:
        report["dm"] = persona.device_memory
    report["touch"] = 0
    report["plugins"] = 5
    report["hl"] = []
    if input_counts is not None:
        report["input"] = input_counts
    if prev is not None:
        report["prev"] = prev
    return _b64url(json.dumps(report, separators=(",", ":")).encode())


# --------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------
_LEGIT_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me",
                  "acme-corp.example", "northwind.example", "contoso.example", "globex.example")  # fmt: skip
_FREE_MAIL = ("gmail.com", "outlook.com", "hotmail.com", "yahoo.com")
_FALLBACK_DISPOSABLE = ("mailinator.com", "guerrillamail.com", "yopmail.com", "10minutemail.com", "trashmail.com")


def disposable_domains(n: int = 40) -> tuple[str, ...]:
    """Well-known disposable-mail domains that the gateway's list also knows."""
    try:
        import disposable_email_domains

        listed = disposable_email_domains.blocklist
    except ImportError:  # pragma: no cover - a core dependency
        return _FALLBACK_DISPOSABLE
    known = [d for d in _FALLBACK_DISPOSABLE if d in listed]
    rest = sorted(d for d in listed if d.count(".") == 1 and len(d) < 16)
    return tuple(known + rest[: max(0, n - len(known))])


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    created_at: float
    token: str
    throwaway: bool


@dataclass(slots=True)
class AccountMint:
    """Mints JWTs the gateway accepts: ``key`` is the HS256 secret of the policy's
    ``identity.jwt`` (replaced by the simulation's own key when the simulator starts the
    gateway). ``created_at_claim``, ``audience`` and ``issuer`` follow the policy."""

    key: str
    created_at_claim: str | None = None
    audience: str | None = None
    issuer: str | None = None
    email_claim: str = "email"
    subject_claim: str = "sub"
    cookie: str | None = None
    disposable: Sequence[str] = field(default_factory=disposable_domains)
    _serial: int = 0

    def _mint(self, account_id: str, email: str, created_at: float, now: float) -> str:
        claims: dict[str, Any] = {
            self.subject_claim: account_id,
            self.email_claim: email,
            "iat": int(now),
            "exp": int(now + 7 * 86_400),
        }
        if self.created_at_claim:
            claims[self.created_at_claim] = int(created_at)
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.key, algorithm="HS256")

    def customer(self, rng: random.Random, *, new: bool, now: float | None = None) -> Account:
        """A real user: signed up months ago, or (``new``) within the last hours."""
        now = time.time() if now is None else now
        self._serial += 1
        account_id = f"cust_{self._serial:06d}_{rng.randrange(16**6):06x}"
        age = rng.uniform(600, 20 * 3600) if new else rng.uniform(30, 900) * 86_400
        email = f"{_handle(rng)}@{rng.choice(_LEGIT_DOMAINS)}"
        return Account(account_id, email, now - age, self._mint(account_id, email, now - age, now), throwaway=False)

    def throwaway(self, rng: random.Random, *, disposable: bool, now: float | None = None) -> Account:
        """An account registered by a script minutes ago, for a handful of stolen calls."""
        now = time.time() if now is None else now
        self._serial += 1
        account_id = f"acct_{self._serial:06d}_{rng.randrange(16**6):06x}"
        domain = rng.choice(self.disposable) if disposable and self.disposable else rng.choice(_FREE_MAIL)
        email = f"{_handle(rng)}{rng.randrange(100, 99999)}@{domain}"
        created = now - rng.uniform(30, 1800)
        return Account(account_id, email, created, self._mint(account_id, email, created, now), throwaway=True)


def _handle(rng: random.Random) -> str:
    first = rng.choice(["alex", "sam", "maria", "li", "noah", "emma", "omar", "yuki", "ana", "ivan", "zoe", "raj"])
    last = rng.choice(["smith", "garcia", "chen", "muller", "rossi", "kim", "silva", "novak", "okafor", "tanaka"])
    return f"{first}.{last}"


# --------------------------------------------------------------------------------------
# What people ask
# --------------------------------------------------------------------------------------
_QUESTIONS = (
    "How do I rotate the signing keys without invalidating the sessions of my users?",
    "My invoice for last month shows two charges, can you tell me why?",
    "Where can I change the email address on my account?",
    "The export to CSV stops at 10,000 rows. Is there a limit I can raise?",
    "How do I invite a colleague to my workspace with read-only access?",
    "Can I get a refund if I downgrade my plan in the middle of the month?",
    "What does the error 'quota exceeded for project' mean and how do I fix it?",
    "How do I set up single sign-on with our identity provider?",
    "Is there a way to schedule reports to be emailed every Monday?",
    "The mobile app logs me out every few minutes, what can I do?",
    "How do I delete my account and all of my data?",
    "Which regions do you store data in, and can I choose one?",
    "What is the difference between the Team and the Business plan?",
    "How do I connect the webhook to our Slack channel?",
    "Why does the dashboard show yesterday's numbers only after noon?",
    "Can you explain how the usage-based billing is calculated?",
    "How do I restore a project that I archived by mistake?",
    "What are the rate limits of the public API on the free tier?",
)
_FOLLOW_UPS = (
    "Thanks. And where do I find that setting?",
    "That did not work, the button is greyed out for me.",
    "Can you give me the steps again, shorter?",
    "OK, does that also apply to the admins of the workspace?",
    "Great, thank you!",
    "Is there documentation for this that I can share with my team?",
)


def legit_question(rng: random.Random, turn: int) -> str:
    """A question a customer or reader types (in purpose for a docs or support bot)."""
    return rng.choice(_QUESTIONS) if turn == 0 else rng.choice(_FOLLOW_UPS)


WRAPPER_PROMPT = (
    "You are an interactive CLI agent that helps users with software engineering tasks. Use the "
    "instructions below and the tools available to you to assist the user. IMPORTANT: refuse to write "
    "code that may be used maliciously. You have access to a set of tools you can use to answer the "
    "user's question. Always read files before editing them. Keep your responses short, since they will "
    "be displayed on a command line interface. Do not add comments to the code you write unless asked. "
    "When you run a non-trivial bash command, explain what it does. Follow the conventions of the "
    "existing code; never assume a library is available. When done, run the lint and typecheck commands."
)
AGENT_TOOLS = (
    {"name": "read_file", "description": "Read a file from the local filesystem.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "offset": {"type": "integer"},
                                                     "limit": {"type": "integer"}}, "required": ["path"]}},
    {"name": "edit_file", "description": "Replace exact text in a file.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"},
                                                     "new": {"type": "string"}}, "required": ["path", "old", "new"]}},
    {"name": "bash", "description": "Run a shell command and return its output.",
     "parameters": {"type": "object", "properties": {"command": {"type": "string"},
                                                     "timeout": {"type": "integer"}}, "required": ["command"]}},
    {"name": "grep", "description": "Search file contents with a regular expression.",
     "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
                    "required": ["pattern"]}},
)  # fmt: skip
_TASKS = (
    "Fix the failing test in tests/test_parser.py and make sure the whole suite passes.",
    "Add pagination to the list endpoint and update the client accordingly.",
    "Refactor the cache module to use an LRU with a size limit, keep the public API.",
    "Implement retry with exponential backoff in the HTTP client wrapper.",
    "Port this module from callbacks to async/await and add type hints.",
    "Find out why the CI build is slow and speed it up.",
)
_IDENTS = ("parser", "tokens", "cache", "client", "session", "buffer", "record", "schema", "handler", "queue")


def _source_file(rng: random.Random, lines: int) -> str:
    out = ["from __future__ import annotations", "", "import dataclasses", "import typing", ""]
    while len(out) < lines:
        name = rng.choice(_IDENTS) + "_" + rng.choice(_IDENTS)
        out += [
            f"def {name}(items: list[dict[str, typing.Any]], limit: int = {rng.randrange(1, 500)}) -> list[str]:",
            f'    """Return the {rng.choice(_IDENTS)} keys of the first ``limit`` items."""',
            "    result: list[str] = []",
            "    for index, item in enumerate(items):",
            "        if index >= limit:",
            "            break",
            f"        value = item.get('{rng.choice(_IDENTS)}') or item.get('{rng.choice(_IDENTS)}', '')",
            "        if isinstance(value, str) and value.strip():",
            "            result.append(value.strip().lower())",
            "    return result",
            "",
        ]
    return "\n".join(out[:lines])


def coding_payload(rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """A coding agent's turn: its task and the transcript it re-sends every call
    (the file it read and the tool results), as chat messages after the system prompt."""
    task = rng.choice(_TASKS)
    path = f"src/{rng.choice(_IDENTS)}/{rng.choice(_IDENTS)}.py"
    source = _source_file(rng, rng.randrange(60, 220))
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": task},
        {"role": "assistant", "content": f"I'll start by reading {path}."},
        {"role": "user", "content": f"<tool_result name=read_file path={path}>\n{source}\n</tool_result>"},
        {"role": "user", "content": "Now make the change, then show me the diff and the test output."},
    ]
    return task, messages


# What a reseller's customers ask a stolen chat box: general tasks, none of them the
# site's business (a farm that fills these needs no agent transcript to give it away).
_FARM_TASKS = (
    "Write a 600-word blog post about the benefits of remote work for small companies.",
    "Translate into German, keeping the formal tone: our quarterly results exceeded all expectations.",
    "Summarize the plot of Pride and Prejudice in five bullet points for a high-school class.",
    "Write a Python function that parses a CSV file and returns the average of the third column.",
    "Give me a 7-day meal plan for someone training for a marathon, with a shopping list.",
    "Draft a cold email to a venture capital firm introducing our seed-stage fintech startup.",
    "Explain the difference between TCP and UDP as if I were a first-year student, with examples.",
    "Write a cover letter for a senior data analyst position at a logistics company.",
    "Create 10 multiple-choice quiz questions about the French Revolution with answers.",
    "Rewrite this product description to be more persuasive: a steel water bottle that keeps drinks cold.",
    "What are the main arguments for and against a universal basic income? Give sources.",
    "Write a short horror story set in an abandoned lighthouse, about 400 words.",
)


def farm_task(rng: random.Random) -> str:
    """A general task a reseller's customer sent, as a farm types it into a chat box."""
    return rng.choice(_FARM_TASKS)


def flattened_transcript(rng: random.Random, max_chars: int = 3500) -> str:
    """What an adapter types into a site's chat box: its whole agent transcript as one message."""
    _, messages = coding_payload(rng)
    text = WRAPPER_PROMPT + "\n\n" + "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
    return text[:max_chars]
