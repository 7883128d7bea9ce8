"""Settings and weights of the prompt signals (:mod:`tokenward.signals.prompt`).

``ContentSettings`` is the policy's ``content:`` section; ``CONTENT_WEIGHTS`` is the
one home of every ``content/*`` weight, including those :mod:`tokenward.content` emits.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CONTENT_WEIGHTS", "MARK", "ContentSettings", "mark"]

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
MARK = 60  # longest matched marker kept as evidence


def mark(text: str) -> str:
    """A matched marker as evidence: whitespace collapsed, at most ``MARK`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= MARK else text[: MARK - 1] + "…"


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
