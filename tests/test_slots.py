"""Answer slots, their fingerprints, and the walk from prompts to their stored results."""

from __future__ import annotations

from pathlib import Path

from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import SlotFingerprints, answer_slots, stored_results
from providers.store import ResponseStore


def _prompts(count: int) -> list[PromptRecord]:
    return [PromptRecord(id=f"p{i}", messages=[{"role": "user", "content": f"question {i}"}]) for i in range(count)]


def test_stored_results_walks_the_prompts_in_chunks_with_what_the_store_holds(tmp_path: Path) -> None:
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"{s}-model") for s in ("a", "b")]
    fingerprints = SlotFingerprints(answer_slots(providers, 2))
    prompts = _prompts(5)
    answer, error = CallResult(ok=True, text="yes"), CallResult(ok=False, error_type="http_500", status_code=500)
    with ResponseStore(tmp_path / "s.sqlite") as store:
        store.put(fingerprints.of(prompts[0].messages, None)["a#1"], "a#1", "p0", answer)
        store.put(fingerprints.of(prompts[3].messages, None)["b#2"], "b#2", "p3", error)
        chunks = list(stored_results(store, fingerprints, iter(prompts), 2))
        assert [[p.id for p in c.prompts] for c in chunks] == [["p0", "p1"], ["p2", "p3"], ["p4"]]
        for chunk in chunks:
            assert chunk.fingerprints == [fingerprints.of(p.messages, p.system) for p in chunk.prompts]
            assert all(list(by_slot) == ["a#1", "a#2", "b#1", "b#2"] for by_slot in chunk.fingerprints)
        assert chunks[0].stored == {chunks[0].fingerprints[0]["a#1"]: answer}
        assert chunks[1].stored == {chunks[1].fingerprints[1]["b#2"]: error}
        assert chunks[2].stored == {}

        # Lazy: a chunk's results are read when it is reached, so it sees what earlier chunks committed.
        walk = stored_results(store, fingerprints, prompts, 2)
        next(walk)
        store.put(fingerprints.of(prompts[2].messages, None)["a#2"], "a#2", "p2", answer)
        assert len(next(walk).stored) == 2
    assert [c.stored for c in stored_results(None, fingerprints, prompts, 4)] == [{}, {}]  # no store yet
    assert list(stored_results(None, fingerprints, [], 4)) == []
