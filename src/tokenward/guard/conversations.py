"""Server-held conversations (``conversation: server`` routes, docs/content.md).

The client may only add one user turn to a conversation id the gateway gave it;
history, system prompts and assistant turns sent by the client are refused. The
history the gateway holds is fetched in the request's store batch and rebuilt into the
body the upstream receives.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..content import (
    CONVERSATION_HEADER,
    ConversationIds,
    ConversationProblem,
    ConversationTurn,
    build_upstream_body,
    check_request,
    expired_problem,
    history_from,
)
from ..decision import Action, Decision
from ..facts import RequestFacts
from ..limits import Keys
from ..policy import RouteSettings
from .plan import Plan

__all__ = ["held", "turn"]


def turn(
    ids: ConversationIds, facts: RequestFacts, route: RouteSettings, keys: Keys
) -> ConversationTurn | Decision | None:
    """The turn the client adds, a refusal, or None on a route without held conversations."""
    cfg = route.conversation
    if cfg is None or facts.call is None:
        return None
    owner = (keys.device or keys.account) if cfg.bind_owner else None
    checked = check_request(
        facts.call, cfg, ids, route=route.path, header=facts.header(CONVERSATION_HEADER.lower()), owner=owner
    )
    if isinstance(checked, ConversationProblem):
        return Decision(
            Action.BLOCK, "conversation/refused", ("conversation/refused",), code=checked.code, message=checked.message
        )
    return checked


def held(
    ids: ConversationIds, facts: RequestFacts, route: RouteSettings, keys: Keys, plan: Plan, results: list[Any],
    conversation: ConversationTurn | None,
) -> tuple[str, Any] | Decision | None:  # fmt: skip
    """After the batch: (conversation id, upstream body), or a refusal when the history
    the client continues is no longer held."""
    cfg = route.conversation
    if conversation is None or cfg is None or facts.call is None:
        return None
    if conversation.new:
        owner = (keys.device or keys.account) if cfg.bind_owner else None
        conv_id, exchanges = ids.issue(route.path, owner), []
    else:
        conv_id = conversation.conversation or ""
        exchanges = history_from(plan.conversation.read(results)) if plan.conversation is not None else []
        if not exchanges:
            problem = expired_problem()
            return Decision(
                Action.BLOCK, "conversation/unknown", ("conversation/unknown",), code=problem.code,
                message=problem.message,
            )  # fmt: skip
    body = build_upstream_body(facts.call, exchanges, conversation, cfg)
    return conv_id, orjson.loads(body)
