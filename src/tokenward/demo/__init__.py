"""The built-in demo: a fake LLM upstream (``tokenward.demo.upstream``) and a chat page.

Nothing is imported here on purpose, so ``python -m tokenward.demo.upstream`` runs the
module once, not twice.
"""
