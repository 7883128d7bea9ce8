"""What an API call says, as plain turns: one reader for every wire shape.

Content signals, purpose scoring, template fingerprints and server-held conversations
all need the same view of a call: which instructions the client supplied (a ``system``
or ``developer`` turn, Anthropic's ``system``, the Responses API's ``instructions``),
the conversation's turns in order, tool definitions, tool calls and tool results, and
the text of the user's latest turn. The shapes read here:

=========================  ===============================================================
OpenAI chat/completions    ``messages[]``: ``role`` system | developer | user | assistant |
                           tool | function; ``content`` a string or parts (``text``,
                           ``image_url``...); ``tool_calls``; top-level ``tools`` /
                           ``functions``
OpenAI completions         ``prompt``: a string or a list of strings
OpenAI Responses           ``instructions``; ``input``: a string or items (messages with
                           ``input_text``/``output_text`` parts, ``function_call``,
                           ``function_call_output``...); ``tools``
Anthropic Messages         ``system`` (string or text blocks); ``messages[]`` with
                           ``text``, ``image``, ``tool_use``, ``tool_result`` blocks; ``tools``
custom                     any of the above, or ``prompt`` / ``message`` / ``query`` /
                           ``question`` / ``input`` strings
=========================  ===============================================================

Reading is bounded: at most ``MAX_TURNS`` turns and ``MAX_TEXT`` characters per turn
are kept, so a hostile body cannot make a signal slow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_TEXT",
    "MAX_TURNS",
    "Transcript",
    "Turn",
    "latest_user_text",
    "transcript",
]

MAX_TURNS = 512
MAX_TEXT = 200_000

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TOOL_ROLES = frozenset({"tool", "function"})
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
_MEDIA_PART_TYPES = frozenset(
    {"image", "image_url", "input_image", "input_audio", "audio", "file", "input_file", "document"}
)
_CUSTOM_TEXT_KEYS = ("prompt", "message", "query", "question", "input", "text")


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of a conversation.

    ``role``: ``system`` | ``user`` | ``assistant`` | ``tool``. ``kind``: ``text`` for
    ordinary content, ``tool_call`` for an assistant's tool/function call, ``tool_result``
    for what a tool returned (an OpenAI ``tool`` message, an Anthropic ``tool_result``
    block, a Responses ``function_call_output``). ``text`` is the turn's readable text
    (tool arguments and results included), truncated to ``MAX_TEXT``.
    """

    role: str
    text: str
    kind: str = "text"
    media: int = 0  # images, audio clips, files


@dataclass(frozen=True, slots=True)
class Transcript:
    """A call read as turns. ``system`` holds client-supplied instructions in order."""

    system: tuple[str, ...] = ()
    turns: tuple[Turn, ...] = ()
    tools: tuple[str, ...] = ()  # names of the tools/functions the call defines
    tool_schema_chars: int = 0  # size of the tool definitions as text
    prompts: int = 0  # completions: how many prompts a list carried
    truncated: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def user_turns(self) -> tuple[Turn, ...]:
        return tuple(t for t in self.turns if t.role == "user" and t.kind == "text")

    @property
    def assistant_turns(self) -> tuple[Turn, ...]:
        return tuple(t for t in self.turns if t.role == "assistant")

    @property
    def tool_results(self) -> tuple[Turn, ...]:
        return tuple(t for t in self.turns if t.kind == "tool_result")

    @property
    def tool_calls(self) -> tuple[Turn, ...]:
        return tuple(t for t in self.turns if t.kind == "tool_call")

    def latest_user(self) -> str:
        """Text of the user's latest turn that has text ('' when none)."""
        for turn in reversed(self.turns):
            if turn.role == "user" and turn.kind == "text" and turn.text.strip():
                return turn.text
        return ""

    def total_chars(self) -> int:
        return sum(len(s) for s in self.system) + sum(len(t.text) for t in self.turns) + self.tool_schema_chars


def _name(value: Any) -> str | None:
    """A ``type`` value as a name; any other JSON value (a number, a list...) is none."""
    return value if isinstance(value, str) else None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT]


def _text_and_media(content: Any) -> tuple[str, int, list[Turn]]:
    """Text of a content value (string or parts), media count, and any tool turns found
    inside it (Anthropic ``tool_use``/``tool_result`` blocks)."""
    if isinstance(content, str):
        return _clip(content), 0, []
    if not isinstance(content, list):
        return "", 0, []
    texts: list[str] = []
    media = 0
    inner: list[Turn] = []
    for part in content[:MAX_TURNS]:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            continue
        kind = _name(part.get("type"))
        if kind in _TEXT_PART_TYPES or (kind is None and isinstance(part.get("text"), str)):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind in _MEDIA_PART_TYPES:
            media += 1
        elif kind == "tool_use" or kind == "server_tool_use":
            inner.append(Turn("assistant", _clip(_args_text(part.get("name"), part.get("input"))), "tool_call"))
        elif kind == "tool_result":
            text, m, _ = _text_and_media(part.get("content"))
            inner.append(Turn("tool", text, "tool_result", m))
    return _clip("\n".join(texts)), media, inner


def _args_text(name: Any, args: Any) -> str:
    label = name if isinstance(name, str) else ""
    if isinstance(args, str):
        return f"{label} {args}".strip()
    if isinstance(args, Mapping):
        vals = [v for v in args.values() if isinstance(v, str)]
        return " ".join([label, *vals]).strip()
    return label


def _tool_names(tools: Any) -> tuple[tuple[str, ...], int]:
    if not isinstance(tools, list):
        return (), 0
    names: list[str] = []
    chars = 0
    for tool in tools[:MAX_TURNS]:
        if not isinstance(tool, Mapping):
            continue
        inner = tool.get("function")
        fn: Mapping[str, Any] = inner if isinstance(inner, Mapping) else tool
        name = fn.get("name")
        if not isinstance(name, str):
            name = tool.get("type") if isinstance(tool.get("type"), str) else None  # built-in tools
        if isinstance(name, str):
            names.append(name[:64])
        desc = fn.get("description")
        if isinstance(desc, str):
            chars += len(desc)
        params = fn.get("parameters", fn.get("input_schema"))
        if params is not None:
            chars += len(str(params)) if not isinstance(params, str) else len(params)
    return tuple(names), chars


def _chat_turns(messages: Sequence[Any], system: list[str]) -> list[Turn]:
    turns: list[Turn] = []
    for msg in messages[:MAX_TURNS]:
        if not isinstance(msg, Mapping):
            continue
        role = msg.get("role")
        if role is not None and not isinstance(role, str):
            role = "user"  # a role no API has: the text is still read, as the user's
        text, media, inner = _text_and_media(msg.get("content"))
        if role in _SYSTEM_ROLES:
            if text:
                system.append(text)
            continue
        if role in _TOOL_ROLES:
            turns.append(Turn("tool", text, "tool_result", media))
            continue
        if role not in ("user", "assistant"):
            role = "user" if role is None else role[:16]
        tool_results = [t for t in inner if t.kind == "tool_result"]
        tool_calls = [t for t in inner if t.kind == "tool_call"]
        if text or media or not inner:
            turns.append(Turn(role, text, "text", media))
        turns.extend(tool_results)
        turns.extend(tool_calls)
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls[:MAX_TURNS]:
                fn = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(fn, Mapping):
                    turns.append(Turn("assistant", _clip(_args_text(fn.get("name"), fn.get("arguments"))), "tool_call"))
        fc = msg.get("function_call")
        if isinstance(fc, Mapping):
            turns.append(Turn("assistant", _clip(_args_text(fc.get("name"), fc.get("arguments"))), "tool_call"))
    return turns


def _responses_turns(items: Sequence[Any], system: list[str]) -> list[Turn]:
    turns: list[Turn] = []
    for item in items[:MAX_TURNS]:
        if isinstance(item, str):
            turns.append(Turn("user", _clip(item)))
            continue
        if not isinstance(item, Mapping):
            continue
        kind = _name(item.get("type"))
        if kind in ("function_call", "custom_tool_call", "local_shell_call", "computer_call"):
            args = item.get("arguments", item.get("input", item.get("action")))
            turns.append(Turn("assistant", _clip(_args_text(item.get("name"), args)), "tool_call"))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            out = item.get("output")
            text, media, _ = _text_and_media(out)
            turns.append(Turn("tool", text, "tool_result", media))
        elif kind == "reasoning":
            continue
        elif "role" in item:
            turns.extend(_chat_turns([item], system))
    return turns


def transcript(body: Mapping[str, Any]) -> Transcript:
    """Read a parsed API call body as a :class:`Transcript` (never raises)."""
    system: list[str] = []
    turns: list[Turn] = []
    prompts = 0
    extra: dict[str, Any] = {}
    sys_field = body.get("system")
    if sys_field is not None:
        text, _, _ = _text_and_media(sys_field)
        if text:
            system.append(text)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(_clip(instructions))
    messages = body.get("messages")
    if isinstance(messages, list):
        turns = _chat_turns(messages, system)
    else:
        inp = body.get("input")
        if isinstance(inp, list):
            turns = _responses_turns(inp, system)
        elif isinstance(inp, str):
            turns = [Turn("user", _clip(inp))]
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list):
                strings = [p for p in prompt[:MAX_TURNS] if isinstance(p, str)]
                prompts = len(strings)
                turns = [Turn("user", _clip(p)) for p in strings]
            elif isinstance(prompt, str):
                prompts = 1
                turns = [Turn("user", _clip(prompt))]
            else:
                for key in _CUSTOM_TEXT_KEYS:
                    value = body.get(key)
                    if isinstance(value, str):
                        turns = [Turn("user", _clip(value))]
                        extra["field"] = key
                        break
    tools, schema_chars = _tool_names(body.get("tools"))
    if not tools:
        tools, schema_chars = _tool_names(body.get("functions"))
    truncated = isinstance(messages, list) and len(messages) > MAX_TURNS
    return Transcript(tuple(system), tuple(turns), tools, schema_chars, prompts, truncated, extra)


def latest_user_text(body: Mapping[str, Any]) -> str:
    """The text of the user's latest turn with text ('' when none): what purpose-fit scores."""
    return transcript(body).latest_user()
