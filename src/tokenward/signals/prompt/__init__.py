"""Prompt signals: what the call itself asks for, and how it is shaped.

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
names and short matched markers (at most ``MARK`` characters), never the prompt.
The agent markers are short phrases from the agents' published prompts (see
docs/content.md for the list and where each comes from).

* :mod:`.settings` — the ``content:`` settings and every ``content/*`` weight;
* :mod:`.shapes` — agent and adapter shapes (:func:`shape_signals`);
* :mod:`.injection` — injection and jailbreak heuristics (:func:`injection_signals`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...decision import Signal
from ...facts import LLMCall
from ...transcript import Transcript, transcript
from .injection import injection_signals
from .settings import CONTENT_WEIGHTS, ContentSettings
from .shapes import AGENT_MARKERS, AGENT_TOOLS, shape_signals

__all__ = [
    "AGENT_MARKERS",
    "AGENT_TOOLS",
    "CONTENT_WEIGHTS",
    "ContentSettings",
    "content_signals",
    "injection_signals",
    "shape_signals",
]


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
