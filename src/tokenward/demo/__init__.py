"""The built-in demo: a fake LLM upstream (``tokenward.demo.upstream``) and a chat page.

``upstream`` is the command line and the public names; ``replies`` holds the token rule
and the deterministic replies, ``calls`` reads requests, ``dialects`` writes the JSON and
SSE of each API, ``app`` is the HTTP app.

Nothing is imported here on purpose, so ``python -m tokenward.demo.upstream`` runs the
module once, not twice.
"""
