"""Encoded text in a turn, decoded for the purpose scorer (content/decode.py)."""

from __future__ import annotations

import base64
import codecs
import time
from urllib.parse import quote

from tokenward.content.decode import decoded_parts

TASK = "Write a short story about a lighthouse keeper"


def test_each_encoding_is_decoded() -> None:
    assert decoded_parts("answer: " + base64.b64encode(TASK.encode()).decode()) == [TASK]
    assert decoded_parts(base64.urlsafe_b64encode(b"Who won the cup in 1998? Tell me more").decode()) == [
        "Who won the cup in 1998? Tell me more"
    ]
    assert decoded_parts("hex please " + TASK.encode().hex()) == [TASK]
    assert decoded_parts("spaced " + TASK.encode().hex(" ")) == [TASK]
    assert decoded_parts(codecs.encode(TASK, "rot13")) == [TASK]
    assert decoded_parts("Answer this (rot13): " + codecs.encode(TASK, "rot13")) == [TASK]
    assert decoded_parts("q=" + quote(TASK)) == ["q=" + TASK]


def test_ordinary_text_is_not_decoded() -> None:
    for text in (
        "Why was my card declined at the supermarket yesterday?",
        "Wie kann ich meine Karte sperren lassen?",
        "ano ibig sabihin ng error na 429?",
        "Transaction ID 4f9a2b7c1d3e5f60 declined with code 05",
        "My API key is mk_live_8Hq2ZpL0vXc7Tn4Rb9Yw, is it valid?",
        "curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9' https://api.example.com/v1/events",
        "Internationalization",
        "",
    ):
        assert decoded_parts(text) == [], text


def test_nesting_is_decoded_once_more_and_no_further() -> None:
    once = base64.b64encode(TASK.encode()).decode()
    twice = base64.b64encode(("look: " + once).encode()).decode()
    assert decoded_parts(twice) == [TASK]
    thrice = base64.b64encode(("look: " + twice).encode()).decode()
    assert decoded_parts(thrice) == ["look: " + once]  # depth 2 at most


def test_work_is_bounded() -> None:
    blob = base64.b64encode(TASK.encode()).decode()
    many = " ".join([blob] * 5000)  # 300 KB of encoded tasks
    started = time.perf_counter()
    out = decoded_parts(many)
    assert len(out) == 3 and all(len(p) <= 600 for p in out)
    long_one = base64.b64encode((TASK + " ").encode() * 500).decode()
    assert all(len(p) <= 600 for p in decoded_parts(long_one))
    assert time.perf_counter() - started < 1.0
