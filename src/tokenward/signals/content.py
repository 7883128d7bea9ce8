"""Content signals: what the call itself asks for, and how it is shaped.

A stolen call is worth reselling only if it can do general work. The shapes that general
work arrives in are distinctive, whatever headers the adapter forges:

* **Agent and adapter shapes** — system prompts of coding and CLI agents (Claude Code,
  Cursor, Aider, Cline/Roo/Kilo, Codex CLI, OpenCode, Gemini CLI, Open Interpreter...),
  their tool sets (``Bash``/``Read``/``Edit``, ``execute_command``, ``apply_patch``...),
  tool results sent back, very long contexts, whole transcripts flattened into one
  message (``User: … Assistant: …``), client-supplied ``system``/``assistant`` turns on a
  route whose own page never sends them, several choices per call (``n > 1``), output
  limits no chat page asks for, and model names the site never offers.
* **Injection and jailbreak heuristics** — instruction override ("ignore all previous
  instructions"), role hijack (DAN, "developer mode", "you are now…"), system-prompt
  extraction, and payloads hidden by encoding (base64, hex, rot13) or by Unicode tricks
  (invisible tag characters, zero-width and bidi controls, mixed-script homoglyphs).

Every function here is pure and bounded (``scan_chars``). Evidence carries counts,
names and short matched markers (at most ``_MARK`` characters), never the prompt.
The agent markers are short phrases from the agents' published prompts (see
docs/content.md for the list and where each comes from).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..decision import Signal
from ..facts import LLMCall
from ..transcript import Transcript, transcript

__all__ = [
    "AGENT_MARKERS",
    "AGENT_TOOLS",
    "CONTENT_WEIGHTS",
    "ContentSettings",
    "content_signals",
    "injection_signals",
    "shape_signals",
]

CONTENT_WEIGHTS: dict[str, float] = {
    "content/agent-prompt": 5.0,
    "content/agent-tools": 4.0,
    "content/tools": 2.0,
    "content/tool-results": 2.0,
    "content/long-context": 2.0,
    "content/flattened-transcript": 3.0,
    "content/client-system": 3.0,
    "content/client-assistant": 2.0,
    "content/n-choices": 3.0,
    "content/max-tokens": 1.0,
    "content/unknown-model": 3.0,
    "content/injection-override": 3.0,
    "content/role-hijack": 3.0,
    "content/prompt-extraction": 3.0,
    "content/encoded-payload": 2.0,
    "content/unicode-tricks": 2.0,
    # emitted by tokenward.content (purpose and templates), listed here so every
    # content weight has one home:
    "content/off-purpose": 4.0,
    "content/template-farm": 4.0,
}
_W = CONTENT_WEIGHTS
_MARK = 60  # longest matched marker kept as evidence


class ContentSettings(BaseModel):
    """``content:`` settings (top level, or per route as ``routes[].content``).

    The booleans describe what the route's *own* client sends; anything else is
    evidence that someone else is calling it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    client_system: bool = Field(
        True, description="the route's own client sends system/developer instructions (false: any is a signal)"
    )
    client_history: bool = Field(
        True, description="the route's own client sends earlier assistant turns (false: any is a signal)"
    )
    tools: bool = Field(True, description="the route's own client sends tool definitions and tool results")
    agents: bool = Field(
        False, description="coding/CLI agents are welcome here: no agent-prompt or agent-tools signals"
    )
    models: tuple[str, ...] = Field(
        (), description="models the site offers (a trailing * matches a prefix); empty: any model"
    )
    max_tokens: int = Field(16_384, ge=1, description="an output limit above this is unusual for this route's client")
    max_tokens_values: tuple[int, ...] = Field(
        (), description="the exact output limits the route's client sends (empty: any up to max_tokens)"
    )
    max_choices: int = Field(1, ge=1, description="n (choices per call) above this is a signal")
    long_context_chars: int = Field(32_000, ge=1_000, description="a call whose text exceeds this is long")
    max_turns: int = Field(60, ge=2, description="a call with more turns than this is long")
    injection: bool = Field(True, description="run the injection and jailbreak heuristics")
    scan_chars: int = Field(
        20_000, ge=1_000, le=1_000_000, description="characters of user/system text the heuristics read per call"
    )


# --------------------------------------------------------------------------------------
# Agent markers: (agent, regular expression). Short distinctive phrases of the agents'
# published system prompts or of the blocks they add to user turns.
# --------------------------------------------------------------------------------------
AGENT_MARKERS: tuple[tuple[str, str], ...] = (
    ("claude-code", "you are claude code, anthropic's official cli"),
    ("claude-code", "anthropic's official cli for claude"),
    ("claude-code", "built on anthropic's claude agent sdk"),
    ("claude-code", "<system-reminder>"),
    ("claude-code", "caveat: the messages below were generated by the user while running local commands"),
    ("cli-agent", "you are an interactive cli tool that helps users with software engineering"),
    ("cursor", "you operate in cursor"),
    ("cursor", "you operate exclusively in cursor"),
    ("cursor", "pair programming with a user to solve their coding task"),
    ("aider", "act as an expert software developer"),
    ("aider", "act as an expert architect engineer"),
    ("aider", "act as an expert code analyst"),
    ("aider", "*search/replace block*"),
    ("cline", "you are cline, a highly skilled software engineer"),
    ("cline", "<environment_details>"),
    ("roo-code", "you are roo, a highly skilled"),
    ("roo-code", "you are roo, an experienced"),
    ("kilo-code", "you are kilo code"),
    ("codex-cli", "you are operating as and within the codex cli"),
    ("codex-cli", "you are a coding agent running in the codex cli"),
    ("codex-cli", "<environment_context>"),
    ("opencode", "you are opencode, an interactive cli tool"),
    ("gemini-cli", "you are an interactive cli agent specializing in software engineering tasks"),
    ("open-interpreter", "you are open interpreter"),
    ("copilot", 'you must respond with "github copilot"'),
    ("windsurf", "you are cascade, a powerful agentic ai coding assistant"),
    ("goose", "you are a general-purpose ai agent called goose"),
    ("swe-agent", "you are an autonomous programmer"),
)
# Lower-case literals, searched as substrings of the lower-cased text (C speed; a big
# case-insensitive regular expression costs about 1 µs per character in Python's re).
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})

# Tool names of coding/CLI agents (exact names; a site's own tools rarely collide with two).
AGENT_TOOLS: dict[str, frozenset[str]] = {
    "claude-code": frozenset(
        {
            "Bash",
            "Read",
            "Edit",
            "MultiEdit",
            "Write",
            "Glob",
            "Grep",
            "LS",
            "TodoWrite",
            "Task",
            "NotebookEdit",
            "WebFetch",
            "WebSearch",
            "ExitPlanMode",
            "BashOutput",
            "KillShell",
        }
    ),
    "cline": frozenset(
        {
            "execute_command",
            "read_file",
            "write_to_file",
            "replace_in_file",
            "search_files",
            "list_files",
            "list_code_definition_names",
            "attempt_completion",
            "ask_followup_question",
            "browser_action",
        }
    ),
    "codex-cli": frozenset({"shell", "apply_patch", "update_plan", "local_shell", "view_image"}),
    "opencode": frozenset(
        {"bash", "edit", "read", "write", "glob", "grep", "list", "todowrite", "todoread", "webfetch"}
    ),
    "cursor": frozenset(
        {
            "codebase_search",
            "run_terminal_cmd",
            "edit_file",
            "grep_search",
            "file_search",
            "list_dir",
            "delete_file",
            "reapply",
        }
    ),
    "gemini-cli": frozenset(
        {
            "run_shell_command",
            "write_file",
            "replace",
            "search_file_content",
            "list_directory",
            "read_many_files",
            "google_web_search",
            "web_fetch",
        }
    ),
    "swe-agent": frozenset({"str_replace_editor", "str_replace_based_edit_tool", "bash", "computer", "text_editor"}),
    "open-interpreter": frozenset({"execute"}),
}
# Any marker at all, in one scan (the table order still picks the evidence).
_MARKER_RE = re.compile("|".join(re.escape(m) for _, m in AGENT_MARKERS))
_TOOL_AGENT: dict[str, list[str]] = {}
for _agent, _names in AGENT_TOOLS.items():
    for _n in _names:
        _TOOL_AGENT.setdefault(_n, []).append(_agent)
_AGENT_TOOL_PREFIXES = (("continue", "builtin_"), ("mcp", "mcp__"))

# --------------------------------------------------------------------------------------
# Flattened transcripts: role labels at line starts, or chat-template tokens.
# --------------------------------------------------------------------------------------
_ROLE_LINE_RE = re.compile(
    r"(?im)^[ \t>*#\[]*(user|human|me|customer|assistant|ai|bot|model|gpt|chatgpt|claude|system)[ \t*\]]*:"
)
_TEMPLATE_TOKEN_RE = re.compile(
    r"<\|im_start\|>|<\|im_end\|>|<\|start_header_id\|>|<\|eot_id\|>|\[/?INST\]|<\|(?:user|assistant|system)\|>"
    r"|<start_of_turn>|<end_of_turn>|<｜(?:User|Assistant)｜>"
)
_USER_LABELS = frozenset({"user", "human", "me", "customer"})
_ASSISTANT_LABELS = frozenset({"assistant", "ai", "bot", "model", "gpt", "chatgpt", "claude"})

# --------------------------------------------------------------------------------------
# Injection and jailbreak heuristics: (name, signal, pattern).
# --------------------------------------------------------------------------------------
_OBJ = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|context|messages?|programming|"
    r"restrictions|constraints|commands|policies|system (?:prompt|message))"
)
_INJECTION: tuple[tuple[str, str, str], ...] = (
    (
        "ignore-previous",
        "content/injection-override",
        r"\b(?:ignore|disregard|forget|skip|override|bypass|neglect|abandon|drop)\b[^.!?\n]{0,40}?"
        r"\b(?:all|any|every|previous|prior|above|earlier|preceding|initial|original|your|the|these|those)\b"
        r"[^.!?\n]{0,30}?\b" + _OBJ,
    ),
    (
        "new-instructions",
        "content/injection-override",
        r"\b(?:new|updated|real|actual|true) (?:instructions|rules|task)\s*:",
    ),
    (
        "instead-do",
        "content/injection-override",
        r"\binstead,? (?:you (?:will|must|should) )?(?:answer|respond to|do|follow)\b",
    ),
    (
        "stop-being",
        "content/injection-override",
        r"\b(?:stop|quit) (?:being|acting as|pretending to be) (?:an?|the) [\w -]{0,20}(?:assistant|bot|agent)\b",
    ),
    (
        "dan",
        "content/role-hijack",
        r"\bDo Anything Now\b|\b(?:DAN|STAN|DUDE|AIM|ANTI-DAN|BetterDAN)\b(?: mode| \d+(?:\.\d)?\b|:)",
    ),
    (
        "mode-switch",
        "content/role-hijack",
        r"\b(?:developer|god|debug|sudo|admin|jailbreak|unrestricted|evil|dev) mode\b",
    ),
    ("jailbreak", "content/role-hijack", r"\bjailbr(?:eak|oken)\w*"),
    (
        "you-are-now",
        "content/role-hijack",
        r"\byou(?:'re| are) (?:now|no longer|going to (?:be|act|pretend))\b|\bfrom now on,? you\b",
    ),
    (
        "unrestricted",
        "content/role-hijack",
        r"\b(?:without|free of|no) (?:any )?(?:ethical|moral|content|safety)? ?(?:restrictions|filters|filtering|"
        r"limitations|censorship|guidelines|boundaries)\b|\b(?:unfiltered|uncensored|unrestricted|amoral) "
        r"(?:ai|assistant|model|chatbot|response|version)\b",
    ),
    (
        "pretend",
        "content/role-hijack",
        r"\b(?:pretend|imagine) (?:to be|you are|you're|that you are)\b|"
        r"\b(?:act|behave|respond) as (?:if you were |an? )?"
        r"(?:an? )?(?:ai|assistant|character|persona|chatbot|model) (?:that|who|with|without|named|called)\b",
    ),
    (
        "system-prompt",
        "content/prompt-extraction",
        r"\b(?:repeat|print|show|reveal|output|display|tell me|give me|share|write (?:out|down)|spell out|recite|"
        r"dump|leak|expose|what (?:are|is|was|were))\b[^.!?\n]{0,40}?\b(?:system (?:prompt|message|instructions)|"
        r"(?:initial|original|hidden|secret|internal|developer|first) (?:prompt|instructions|message)|"
        r"your (?:instructions|prompt|directives|configuration)|pre-?prompt|meta-?prompt)",
    ),
    (
        "text-above",
        "content/prompt-extraction",
        r"\b(?:repeat|print|output|copy|translate|summari[sz]e)\b[^.!?\n]{0,30}?\b(?:words|text|everything|"
        r"content|instructions)\b[^.!?\n]{0,12}?\b(?:above|before (?:this|my|the first))\b|"
        r"\bbeginning with ['\"]?you are\b",
    ),
)
# Lower-case substrings without which a pattern cannot match: it runs only when one occurs.
_INJECTION_TRIGGERS: dict[str, tuple[str, ...]] = {
    "ignore-previous": ("ignor", "disregard", "forget", "skip", "override", "bypass", "neglect", "abandon", "drop"),
    "new-instructions": ("instructions", "rules", "task"),
    "instead-do": ("instead",),
    "stop-being": ("stop", "quit"),
    "dan": ("dan", "stan", "dude", "aim", "anything now"),
    "mode-switch": (" mode",),
    "jailbreak": ("jailbr",),
    "you-are-now": ("you are", "you're", "from now on"),
    "unrestricted": ("restriction", "filter", "limitation", "censor", "guideline", "boundar", "unrestricted", "amoral"),
    "pretend": ("pretend", "imagine", " as "),
    "system-prompt": ("prompt", "instruction", "directive", "configuration", "message"),
    "text-above": ("above", "before", "you are"),
}
_ALL_TRIGGERS: tuple[str, ...] = tuple(sorted({t for ts in _INJECTION_TRIGGERS.values() for t in ts}))
_INJECTION_COMPILED: tuple[tuple[str, str, re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (pattern, name, re.compile(rx, re.IGNORECASE), _INJECTION_TRIGGERS[pattern]) for pattern, name, rx in _INJECTION
)

# Encoded payloads.
_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")
_B64URL_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9+/=_-])")
_LONG_TOKEN_RE = re.compile(r"\S{32,}")
_HEX_RE = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :,]?){20,}")
_ROT13_HINT_RE = re.compile(r"\brot[- ]?13\b|\bcaesar(?:'s)? cipher\b|\bdecode (?:this|the following)\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[a-z]+")
_COMMON_WORDS = frozenset(
    "the be to of and a in that have it for not on with he as you do at this but his by from they we say her she "
    "or an will my one all would there their what so up out if about who get which go me when make can like time "
    "no just him know take people into year your good some could them see other than then now look only come its "
    "over think also back after use two how our work first well way even new want because any these give day most "
    "us is are was were how write tell explain give ignore instructions please".split()
)

# Unicode tricks.
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e]")
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")
_TAG_RE = re.compile("[\U000e0000-\U000e007f]")
_VARIATION_RE = re.compile("[\U000e0100-\U000e01ef]")
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e]{6,}")
_MIXED_SCRIPT_RE = re.compile(
    r"\b(?=\w*[A-Za-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])[A-Za-z\u0370-\u03ff\u0400-\u04ff]{3,}\b"
)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _mark(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MARK else text[: _MARK - 1] + "…"


def _model_offered(model: str, offered: Iterable[str]) -> bool:
    for m in offered:
        if m.endswith("*"):
            if model.startswith(m[:-1]):
                return True
        elif model == m:
            return True
    return False


def _agent_marker(texts: Iterable[str], limit: int) -> tuple[str, str] | None:
    for text in texts:
        low = text[:limit].lower().translate(_QUOTES)
        if _MARKER_RE.search(low) is None:  # one C scan; most texts carry no marker
            continue
        for agent, marker in AGENT_MARKERS:  # the first marker in table order is the evidence
            if marker in low:
                return agent, _mark(marker)
    return None


def _agent_tools(names: Iterable[str]) -> tuple[str, list[str]] | None:
    hits: dict[str, list[str]] = {}
    for name in names:
        for agent in _TOOL_AGENT.get(name, ()):
            hits.setdefault(agent, []).append(name)
        for agent, prefix in _AGENT_TOOL_PREFIXES:
            if name.startswith(prefix):
                hits.setdefault(agent, []).append(name)
    best = max(hits.items(), key=lambda kv: len(kv[1]), default=None)
    if best is None or len(best[1]) < 2:
        return None
    return best[0], sorted(best[1])[:8]


def _flattened(text: str, limit: int) -> dict[str, Any] | None:
    head = text[:limit]
    tokens = _TEMPLATE_TOKEN_RE.findall(head)
    if len(tokens) >= 2:
        return {"markers": sorted({_mark(t) for t in tokens})[:6], "count": len(tokens)}
    labels = [m.group(1).lower() for m in _ROLE_LINE_RE.finditer(head)]
    users = sum(1 for lab in labels if lab in _USER_LABELS)
    assistants = sum(1 for lab in labels if lab in _ASSISTANT_LABELS)
    if users >= 1 and assistants >= 1 and users + assistants >= 3:
        return {"markers": sorted(set(labels))[:6], "count": len(labels)}
    return None


def _common_ratio(text: str) -> float:
    words = _WORD_RE.findall(text.lower())
    if len(words) < 4:
        return 0.0
    return sum(map(_COMMON_WORDS.__contains__, words)) / len(words)


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t\r")
    letters = sum(1 for c in text if c.isalpha() or c == " ")
    if printable / len(text) < 0.95 or letters / len(text) < 0.6:
        return None
    return text


def _encoded(text: str) -> dict[str, Any] | None:
    long_token = _LONG_TOKEN_RE.search(text) is not None
    for rx, kind in ((_B64_RE, "base64"), (_B64URL_RE, "base64url")) if long_token else ():
        for m in rx.finditer(text):
            blob = m.group(0).rstrip("=")
            if blob.isalpha() and (blob.islower() or blob.isupper()):
                continue  # a long word, not an encoding
            pad = "=" * (-len(blob) % 4)
            try:
                raw = (
                    base64.b64decode(blob + pad, validate=True)
                    if kind == "base64"
                    else base64.urlsafe_b64decode(blob + pad)
                )
            except (binascii.Error, ValueError):
                continue
            decoded = _printable_text(raw)
            if decoded is not None and " " in decoded:
                return {"encoding": kind, "chars": len(m.group(0))}
    # Text encoded as hex has a digit in nearly every byte: prose with 20 digits is rare.
    n_digits = sum(map(text.count, "0123456789"))
    for m in _HEX_RE.finditer(text) if n_digits >= 20 else ():
        hexa = re.sub(r"[ :,]", "", m.group(0))
        if len(hexa) % 2:
            hexa = hexa[:-1]
        try:
            decoded = _printable_text(bytes.fromhex(hexa))
        except ValueError:
            continue
        if decoded is not None and " " in decoded:
            return {"encoding": "hex", "chars": len(m.group(0))}
    head = text[:600]
    hinted = _ROT13_HINT_RE.search(head) is not None
    if hinted or (len(head) >= 40 and head.isascii() and _common_ratio(head) < 0.1):
        plain = _common_ratio(head)
        rotated = _common_ratio(codecs.decode(head, "rot13"))
        if rotated >= 0.25 and rotated > plain + 0.15:
            return {"encoding": "rot13", "chars": len(text)}
    return None


def _unicode_tricks(text: str) -> dict[str, Any] | None:
    if text.isascii():
        return None
    found: dict[str, int] = {}
    for name, rx in (
        ("tag-characters", _TAG_RE),
        ("variation-selectors", _VARIATION_RE),
        ("bidi-controls", _BIDI_RE),
        ("zero-width", _INVISIBLE_RE),
        ("fullwidth", _FULLWIDTH_RE),
        ("mixed-script", _MIXED_SCRIPT_RE),
    ):
        n = len(rx.findall(text))
        if n:
            found[name] = n
    # A single zero-width joiner is normal in emoji sequences; one mixed word can be a name.
    if found.get("zero-width", 0) < 3:
        found.pop("zero-width", None)
    if found.get("mixed-script", 0) < 2:
        found.pop("mixed-script", None)
    return {"kinds": sorted(found), "count": sum(found.values())} if found else None


def _scan_texts(tr: Transcript, limit: int) -> list[tuple[str, str]]:
    """(where, text) to run the heuristics on, newest user text first, within ``limit``."""
    out: list[tuple[str, str]] = []
    budget = limit
    for turn in reversed(tr.turns):
        if budget <= 0:
            break
        if turn.role == "user" and turn.kind == "text" and turn.text:
            out.append(("user", turn.text[:budget]))
            budget -= min(len(turn.text), budget)
    for text in tr.system:
        if budget <= 0:
            break
        out.append(("system", text[:budget]))
        budget -= min(len(text), budget)
    return out


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------
def shape_signals(call: LLMCall, cfg: ContentSettings, tr: Transcript | None = None) -> list[Signal]:
    """Agent and adapter shapes of one call."""
    body = call.body
    tr = transcript(body) if tr is None else tr
    out: list[Signal] = []
    limit = cfg.scan_chars

    if not cfg.agents:
        user_texts = [t.text for t in tr.turns if t.role == "user" and t.kind == "text"][:4]
        marker = _agent_marker([*tr.system, *user_texts], limit)
        if marker is not None:
            out.append(
                Signal("content/agent-prompt", _W["content/agent-prompt"], {"agent": marker[0], "marker": marker[1]})
            )
        agent_tools = _agent_tools(tr.tools)
        if agent_tools is None:  # tool calls replayed in history name the tools too
            agent_tools = _agent_tools({t.text.split(" ", 1)[0] for t in tr.tool_calls if t.text})
        if agent_tools is not None:
            out.append(
                Signal(
                    "content/agent-tools", _W["content/agent-tools"], {"agent": agent_tools[0], "tools": agent_tools[1]}
                )
            )

    if not cfg.tools:
        if tr.tools:
            out.append(
                Signal("content/tools", _W["content/tools"], {"count": len(tr.tools), "names": list(tr.tools[:8])})
            )
        results = len(tr.tool_results)
        calls = len(tr.tool_calls)
        if results or calls:
            out.append(Signal("content/tool-results", _W["content/tool-results"], {"results": results, "calls": calls}))

    chars = tr.total_chars()
    if chars > cfg.long_context_chars or len(tr.turns) > cfg.max_turns or tr.truncated:
        out.append(Signal("content/long-context", _W["content/long-context"], {"chars": chars, "turns": len(tr.turns)}))

    for turn in tr.user_turns[-2:]:
        flat = _flattened(turn.text, limit)
        if flat is not None:
            out.append(Signal("content/flattened-transcript", _W["content/flattened-transcript"], flat))
            break

    if not cfg.client_system and tr.system:
        out.append(
            Signal(
                "content/client-system",
                _W["content/client-system"],
                {"count": len(tr.system), "chars": sum(len(s) for s in tr.system)},
            )
        )
    if not cfg.client_history:
        assistants = sum(1 for t in tr.turns if t.role == "assistant" and t.kind == "text")
        if assistants:
            out.append(
                Signal("content/client-assistant", _W["content/client-assistant"], {"assistant_turns": assistants})
            )

    n = body.get("n")
    best_of = body.get("best_of")
    choices = max(
        n if isinstance(n, int) and not isinstance(n, bool) else 1,
        best_of if isinstance(best_of, int) and not isinstance(best_of, bool) else 1,
        tr.prompts,
    )
    if choices > cfg.max_choices:
        out.append(Signal("content/n-choices", _W["content/n-choices"], {"n": choices}))

    mt = call.max_tokens
    if mt is not None and (mt > cfg.max_tokens or (cfg.max_tokens_values and mt not in cfg.max_tokens_values)):
        out.append(Signal("content/max-tokens", _W["content/max-tokens"], {"max_tokens": mt}))

    if cfg.models and call.model is not None and not _model_offered(call.model, cfg.models):
        out.append(Signal("content/unknown-model", _W["content/unknown-model"], {"model": call.model[:80]}))
    return out


def injection_signals(tr: Transcript, cfg: ContentSettings) -> list[Signal]:
    """Instruction override, role hijack, prompt extraction, encoded payloads, Unicode tricks."""
    out: list[Signal] = []
    seen: set[str] = set()
    encoded_done = unicode_done = False
    for where, text in _scan_texts(tr, cfg.scan_chars):
        low = text.lower()
        present = {t for t in _ALL_TRIGGERS if t in low}  # each trigger searched once per text
        for pattern, name, rx, triggers in _INJECTION_COMPILED:
            if name in seen or present.isdisjoint(triggers):
                continue
            m = rx.search(text)
            if m is None:
                continue
            seen.add(name)
            out.append(Signal(name, _W[name], {"pattern": pattern, "match": _mark(m.group(0)), "where": where}))
        if not encoded_done:
            enc = _encoded(text)
            if enc is not None:
                encoded_done = True
                out.append(Signal("content/encoded-payload", _W["content/encoded-payload"], {**enc, "where": where}))
        if not unicode_done:
            tricks = _unicode_tricks(text)
            if tricks is not None:
                unicode_done = True
                out.append(Signal("content/unicode-tricks", _W["content/unicode-tricks"], {**tricks, "where": where}))
    return out


def content_signals(call: LLMCall, cfg: ContentSettings, tr: Transcript | None = None) -> list[Signal]:
    """Every content signal of one call (shapes, then injection heuristics); ``tr`` is the
    call's transcript when the caller has it already."""
    if not cfg.enabled:
        return []
    tr = transcript(call.body) if tr is None else tr
    out = shape_signals(call, cfg, tr)
    if cfg.injection:
        out.extend(injection_signals(tr, cfg))
    return out


def weights() -> Mapping[str, float]:
    """The default weight of every content signal."""
    return CONTENT_WEIGHTS
