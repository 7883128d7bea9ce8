"""Exact usage of a call, read from the upstream's response as it streams through.

* :func:`prepare_request` — the body to forward: adds ``stream_options.include_usage``
  to OpenAI streaming requests that lack it (so the last SSE chunk carries usage), and
  optionally caps the output limit (:func:`~tokenward.money.tokens.limit_output`).
* :class:`UsageMeter` — fed every response chunk as the proxy receives it; returns the
  bytes to forward (the same chunk, except that a usage chunk the gateway itself asked
  for is removed) and, at the end, the :class:`Usage` to commit.
* :func:`usage_from_json` — the same for a complete JSON body.

Where usage is found (all flavours; the shapes are detected, not configured):

=========================  ================================================================
OpenAI chat/completions    ``usage.prompt_tokens`` / ``completion_tokens`` (JSON; the last
                           SSE chunk when ``include_usage`` is set)
OpenAI Responses           ``usage.input_tokens`` / ``output_tokens`` (JSON;
                           ``response.completed`` / ``incomplete`` / ``failed`` events)
OpenAI embeddings          ``usage.prompt_tokens``
Anthropic Messages         ``usage.input_tokens`` (+ cache tokens) / ``output_tokens`` (JSON;
                           ``message_start`` for input, ``message_delta`` for output)
=========================  ================================================================

When no usage arrives (the client left mid-stream and the upstream was cut off, or the
upstream never reports usage) the output is estimated by counting the text the upstream
did stream, and the input is the estimate made before the call: ``exact`` is then False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .tokens import Endpoint, bytes_estimate, endpoint_of, limit_output

__all__ = ["Prepared", "Usage", "UsageMeter", "prepare_request", "usage_from_json"]

Counter = Callable[[str], int]

# Raw SSE kept for the text fallback before it is condensed to text (bounds memory).
_RAW_KEEP = 1 << 20
# A line or event longer than this is not SSE we understand: forward it, stop holding.
_MAX_HOLD = 1 << 20
_JSON_KEEP = 8 << 20  # JSON bodies above this are not kept whole: usage is read from the tail
_JSON_TAIL = 64 << 10


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used. ``exact``: both counts came from the upstream; otherwise at
    least one is an estimate (input: the pre-call estimate; output: counted text)."""

    input_tokens: int
    output_tokens: int
    exact: bool

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare_request` decided. ``body``: the bytes to forward upstream, or
    None to forward the client's bytes unchanged. ``inject_usage``: the gateway added
    ``include_usage`` — pass it to :class:`UsageMeter` so the client never sees it.
    ``limited``: the output limit was lowered or added."""

    body: bytes | None
    inject_usage: bool = False
    limited: bool = False


def prepare_request(
    body: Mapping[str, Any],
    flavour: str,
    path: str,
    *,
    output_limit: int | None = None,
    want_usage: bool = True,
) -> Prepared:
    """Decide the body to forward for an API call (parsed JSON ``body``).

    For OpenAI chat/completions requests with ``stream: true`` and without
    ``stream_options.include_usage: true``, adds it (``want_usage``), so the stream ends
    with an exact usage chunk. With ``output_limit``, also caps the per-choice output
    limit (see :func:`~tokenward.money.tokens.limit_output`). Forwarding a modified body
    is fine: the proof covered the client's bytes, which the gateway checked.
    """
    endpoint = endpoint_of(flavour, path)
    new: dict[str, Any] | None = None
    inject = False
    if (
        want_usage
        and endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS)
        and body.get("stream") is True
        and not _asks_usage(body)
    ):
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, Mapping) else {}
        options["include_usage"] = True
        new = {**body, "stream_options": options}
        inject = True
    limited = False
    if output_limit is not None:
        capped = limit_output(new if new is not None else body, endpoint, output_limit)
        if capped is not None:
            new, limited = capped, True
    return Prepared(None if new is None else orjson.dumps(new), inject, limited)


def _asks_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


# -- reading usage objects ------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value >= 0 and value.is_integer():
        return int(value)
    return None


def _read_usage(usage: Any) -> tuple[int | None, int | None]:
    """``(input, output)`` from any known usage object (either may be None)."""
    if not isinstance(usage, dict):
        return None, None
    inp = _int(usage.get("prompt_tokens"))
    if inp is None:
        inp = _int(usage.get("input_tokens"))
        if inp is not None:  # Anthropic bills cache writes and reads as input too
            inp += (_int(usage.get("cache_creation_input_tokens")) or 0) + (
                _int(usage.get("cache_read_input_tokens")) or 0
            )
    out = _int(usage.get("completion_tokens"))
    if out is None:
        out = _int(usage.get("output_tokens"))
    return inp, out


def _text_of_response(data: Any, texts: list[str]) -> None:
    """Generated text in a complete JSON response (for the estimate when usage is missing)."""
    if not isinstance(data, dict):
        return
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            _text_of_delta(choice.get("message"), texts)
            if isinstance(choice.get("text"), str):
                texts.append(choice["text"])
    content = data.get("content")
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict):
            for key in ("text", "thinking"):
                if isinstance(block.get(key), str):
                    texts.append(block[key])
            if "input" in block:
                texts.append(orjson.dumps(block["input"]).decode())
    output = data.get("output")
    for item in output if isinstance(output, list) else ():
        if isinstance(item, dict):
            if isinstance(item.get("arguments"), str):
                texts.append(item["arguments"])
            for part in item.get("content") or ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
    for key in ("reply", "output_text"):  # a site's own shapes
        if isinstance(data.get(key), str):
            texts.append(data[key])


def _text_of_delta(delta: Any, texts: list[str]) -> None:
    if not isinstance(delta, dict):
        return
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str):
            texts.append(value)
    for call in delta.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            for key in ("name", "arguments"):
                value = call["function"].get(key)
                if isinstance(value, str):
                    texts.append(value)


def _text_of_event(data: Any, texts: list[str]) -> None:
    """Generated text in one streamed event of any flavour."""
    if not isinstance(data, dict):
        return
    choices = data.get("choices")
    if isinstance(choices, list):  # OpenAI chat and completions
        for choice in choices:
            if isinstance(choice, dict):
                _text_of_delta(choice.get("delta"), texts)
                if isinstance(choice.get("text"), str):
                    texts.append(choice["text"])
        return
    delta = data.get("delta")
    if isinstance(delta, str):  # Responses *.delta events, or a site's {"delta": "..."}
        texts.append(delta)
    elif isinstance(delta, dict) and data.get("type") == "content_block_delta":  # Anthropic
        for key in ("text", "partial_json", "thinking"):
            value = delta.get(key)
            if isinstance(value, str):
                texts.append(value)


def usage_from_json(body: bytes, *, input_estimate: int, count: Counter = bytes_estimate) -> Usage:
    """Usage of a complete JSON response body (any flavour).

    Exact when the body has a ``usage`` object; otherwise ``input_estimate`` plus the
    generated text counted with ``count`` (0 output for an error body or non-JSON).
    """
    data: Any = None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    inp = out = None
    if isinstance(data, dict):
        inp, out = _read_usage(data.get("usage"))
        if inp is not None and out is None and "usage" in data and not data.get("choices"):
            out = 0  # embeddings: usage has prompt_tokens only
    if inp is not None and out is not None:
        return Usage(inp, out, exact=True)
    texts: list[str] = []
    _text_of_response(data, texts)
    estimated_out = sum(count(t) for t in texts if t) if out is None else out
    return Usage(input_estimate if inp is None else inp, estimated_out, exact=False)


# -- streaming ------------------------------------------------------------------------


class UsageMeter:
    """Reads usage from a response as it streams through the proxy.

    ``meter = UsageMeter(flavour, path, inject_usage=prepared.inject_usage,
    input_estimate=n, count=estimator.counter(model), sse=is_event_stream)``; then for
    every chunk received from the upstream forward ``meter.feed(chunk)``, at the end
    forward ``meter.end()`` too, and commit ``meter.result()``.

    ``feed`` is cheap: it splits on the last newline and looks for ``"usage"`` with a
    substring search; JSON is parsed only for lines that carry a non-null usage. Text
    for the fallback estimate is parsed lazily, only if no exact usage arrives.

    With ``inject_usage`` the final usage-only chunk (``"choices": []`` with a usage
    object) is removed from what is forwarded, so a client that did not ask for usage
    never sees it; for that the meter forwards whole SSE events only (an incomplete
    event is held until its blank line — no SSE client acts on half an event).

    With ``sse=False`` the body is taken as JSON: forwarded unchanged, parsed once at
    :meth:`result` (above 8 MB only its last 64 KB is kept, where usage is).

    With an upstream ``status`` of 400 or more and no usage in the body, the result is
    0 tokens: providers do not bill failed calls.

    SSE lines must end in ``\\n`` or ``\\r\\n``; a stream with lone ``\\r`` endings is
    forwarded as it comes but not read for usage.
    """

    __slots__ = (
        "_count",
        "_done",
        "_endpoint",
        "_held",
        "_in",
        "_input_estimate",
        "_json",
        "_json_size",
        "_json_tail",
        "_out",
        "_raw",
        "_raw_size",
        "_sse",
        "_status",
        "_strip",
        "_tail",
        "_texts",
    )

    def __init__(
        self,
        flavour: str,
        path: str,
        *,
        inject_usage: bool = False,
        input_estimate: int = 0,
        count: Counter = bytes_estimate,
        sse: bool = True,
        status: int = 200,
    ) -> None:
        self._endpoint = endpoint_of(flavour, path)
        self._strip = inject_usage and sse
        self._sse = sse
        self._input_estimate = max(int(input_estimate), 0)
        self._count = count
        self._tail = b""  # an incomplete line (parsing)
        self._held = b""  # an incomplete event (forwarding, when stripping)
        self._raw: list[bytes] = []  # complete lines not yet condensed to text
        self._raw_size = 0
        self._texts: list[str] = []
        self._json: list[bytes] | None = []
        self._json_size = 0
        self._json_tail = b""
        self._status = status
        self._in: int | None = None
        self._out: int | None = None
        self._done = False

    # -- feeding ----------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        """Take the next bytes from the upstream -> the bytes to send to the client."""
        if not chunk:
            return b""
        if not self._sse:
            self._json_size += len(chunk)
            if self._json is not None:
                self._json.append(chunk)
                if self._json_size > _JSON_KEEP:  # keep only the end, where usage is
                    self._json_tail = b"".join(self._json)[-_JSON_TAIL:]
                    self._json = None
            else:
                self._json_tail = (self._json_tail + chunk)[-_JSON_TAIL:]
            return chunk
        if self._strip:
            return self._feed_events(chunk)
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self._tail = data if len(data) <= _MAX_HOLD else b""
            return chunk
        self._tail = data[cut:]
        self._lines(data[:cut] if cut < len(data) else data)
        return chunk

    def _feed_events(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\n\r\n")
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        if end == 0:
            if len(data) > _MAX_HOLD or b"\r\r" in data:  # not SSE we can cut: stop holding it
                self._held = b""
                self._strip = False
                self._lines(data + b"\n")
                return data
            self._held = data
            return b""
        self._held = data[end:]
        return self._lines(data[:end] if end < len(data) else data, strip=True)

    def end(self) -> bytes:
        """The stream ended or was cut off -> the bytes still held back, to forward
        (usually none). Call it once, before :meth:`result`."""
        if self._done:
            return b""
        self._done = True
        held, self._held = self._held, b""
        tail, self._tail = self._tail, b""
        if tail:  # a last line without its newline
            self._lines(tail + b"\n")
        return self._lines(held, strip=True) if held else b""

    def _lines(self, block: bytes, strip: bool = False) -> bytes:
        """Note complete lines for usage and text; with ``strip``, return ``block``
        without the injected usage-only event."""
        self._raw.append(block)
        self._raw_size += len(block)
        if self._raw_size > _RAW_KEEP:
            self._condense()
        marks = block.count(b'"usage"')
        if marks == 0 or marks == block.count(b'"usage":null') + block.count(b'"usage": null'):
            return block
        if not strip:
            for line in block.split(b"\n"):
                if b'"usage"' in line:
                    self._usage_line(line)
            return block
        return self._strip_usage_event(block)

    def _strip_usage_event(self, block: bytes) -> bytes:
        out: list[bytes] = []
        event: list[bytes] = []
        drop = False
        for line in block.splitlines(keepends=True):
            event.append(line)
            if b'"usage"' in line and self._usage_line(line):
                drop = True
            if line in (b"\n", b"\r\n"):  # the blank line ends an event
                if not drop:
                    out.extend(event)
                event, drop = [], False
        if not drop:
            out.extend(event)
        return b"".join(out)

    def _usage_line(self, line: bytes) -> bool:
        """Read usage from one SSE line; True if it is a usage-only chunk to strip."""
        stripped = line.strip()
        if not stripped.startswith(b"data:"):
            return False
        try:
            data = orjson.loads(stripped[5:])
        except orjson.JSONDecodeError:
            return False
        if not isinstance(data, dict):
            return False
        kind = data.get("type")
        if kind == "message_start":  # Anthropic: input now, output at message_delta
            message = data.get("message")
            inp, _ = _read_usage(message.get("usage") if isinstance(message, dict) else None)
            if inp is not None:
                self._in = inp
            return False
        usage = data.get("usage")
        if usage is None and isinstance(data.get("response"), dict):  # Responses
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                usage = data["response"].get("usage")
        inp, out = _read_usage(usage)
        if inp is not None:
            self._in = inp if self._in is None else max(self._in, inp)
        if out is not None:
            self._out = out
        return (
            self._strip
            and inp is not None
            and out is not None
            and data.get("choices") == []
            and self._endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS)
        )

    def _condense(self) -> None:
        """Turn the raw lines kept so far into streamed text (bounds memory)."""
        raw, self._raw, self._raw_size = self._raw, [], 0
        for block in raw:
            for line in block.split(b"\n"):
                line = line.strip()
                if line.startswith(b"data:") and len(line) > 6:
                    try:
                        data = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        continue
                    _text_of_event(data, self._texts)

    # -- results ----------------------------------------------------------------------
    def text(self) -> str:
        """The text the upstream generated (streamed deltas, or the JSON body's content):
        what a server-held conversation records as the assistant's turn."""
        if not self._sse:
            if self._json is None:
                return ""
            try:
                data = orjson.loads(b"".join(self._json))
            except orjson.JSONDecodeError:
                return ""
            texts: list[str] = []
            _text_of_response(data, texts)
            return "".join(texts)
        self._condense()
        return "".join(t for t in self._texts if t)

    @property
    def exact(self) -> bool:
        """True once both counts have arrived from the upstream."""
        return self._in is not None and self._out is not None

    def result(self) -> Usage:
        """The usage to commit: exact if the upstream reported it, else estimated."""
        if not self._sse:
            if self._json is not None:
                usage = usage_from_json(b"".join(self._json), input_estimate=self._input_estimate, count=self._count)
            else:
                usage = _usage_in_tail(self._json_tail, self._input_estimate)
            return _NOTHING if self._status >= 400 and not usage.exact else usage
        self.end()  # a no-op if the proxy already called it
        if self.exact:
            return Usage(self._in or 0, self._out or 0, exact=True)
        if self._status >= 400:
            return _NOTHING
        out = self._out
        if out is None:
            self._condense()
            out = sum(self._count(t) for t in self._texts if t)
        inp = self._input_estimate if self._in is None else self._in
        return Usage(inp, out, exact=False)


_NOTHING = Usage(0, 0, exact=False)  # an upstream error without usage: providers do not bill it


def _usage_in_tail(tail: bytes, input_estimate: int) -> Usage:
    """Usage from the last ``"usage": {...}`` object of a body too large to keep whole
    (embeddings of big batches); output 0 when there is none (no model writes megabytes)."""
    at = tail.rfind(b'"usage"')
    start = tail.find(b"{", at) if at >= 0 else -1
    depth = 0
    for end in range(start, len(tail) if start >= 0 else 0):
        depth += {123: 1, 125: -1}.get(tail[end], 0)  # { and }
        if depth == 0:
            try:
                inp, out = _read_usage(orjson.loads(tail[start : end + 1]))
            except orjson.JSONDecodeError:
                break
            if inp is not None:
                return Usage(inp, out or 0, exact=True)
            break
    return Usage(input_estimate, 0, exact=False)
