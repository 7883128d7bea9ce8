"""Reading what a request asks for: purpose fit, templates, server-held conversations.

* :mod:`.purpose` — purpose-fit scoring (lexical always; semantic with the optional
  ``semantic`` extra, see :mod:`.embedding`).
* :mod:`.templates` — MinHash fingerprints of a call's fixed parts, counted across
  identities with the Store's ``Distinct`` op.
* :mod:`.conversations` — the ``conversation: server`` route option.
* :mod:`.evaluate` — ``tokenward eval-content``.

Every part reads a call through :mod:`tokenward.transcript` (one reader for every API
shape: system, turns, tools, latest user text; re-exported here). The agent/adapter
shapes and injection heuristics are signals: :mod:`tokenward.signals.prompt`. Nothing
here imports numpy or the model until a semantic scorer is created.
"""

from ..transcript import Transcript, Turn, latest_user_text, transcript
from .conversations import (
    HEADER as CONVERSATION_HEADER,
)
from .conversations import (
    ConversationIds,
    ConversationProblem,
    ConversationSettings,
    ConversationTurn,
    Exchange,
    build_upstream_body,
    check_request,
    expired_problem,
    history_from,
    ops_to_load,
    ops_to_save,
)
from .embedding import EmbeddingRuntime, EmbeddingUnavailable, runtime_status, shared_runtime
from .purpose import (
    PurposeResult,
    PurposeScorer,
    PurposeSettings,
    conversation_context,
    purpose_action,
    purpose_signals,
)
from .templates import TemplateSettings, template_keys, template_ops, template_signals

__all__ = [
    "CONVERSATION_HEADER",
    "ConversationIds",
    "ConversationProblem",
    "ConversationSettings",
    "ConversationTurn",
    "EmbeddingRuntime",
    "EmbeddingUnavailable",
    "Exchange",
    "PurposeResult",
    "PurposeScorer",
    "PurposeSettings",
    "TemplateSettings",
    "Transcript",
    "Turn",
    "build_upstream_body",
    "check_request",
    "conversation_context",
    "expired_problem",
    "history_from",
    "latest_user_text",
    "ops_to_load",
    "ops_to_save",
    "purpose_action",
    "purpose_signals",
    "runtime_status",
    "shared_runtime",
    "template_keys",
    "template_ops",
    "template_signals",
    "transcript",
]
