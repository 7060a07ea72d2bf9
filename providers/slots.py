"""Answer slots: which answers a prompt gets, and the ``source_id`` each carries in a task.

With ``samples_per_provider: 1`` a slot's id is the provider's ``source_id``. With k > 1 samples the
ids are ``<source_id>#1`` … ``<source_id>#k``: ``#`` cannot appear in a configured source_id, so the
ids stay unique, and the part before ``#`` names the provider (metadata also records ``provider`` and
``sample`` for every answer). Sample n is sent as the same request; the sample index is part of the
request fingerprint, so each sample is stored, resumed and reused on its own.

:func:`stored_results` is the one walk from prompts to what the store holds for their slots (a run,
its status and a sharded batch's merge all read the store this way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from providers.base import system_text
from providers.config import ProviderConfig
from providers.fingerprint import provider_identity, request_fingerprint
from providers.result import CallResult
from providers.store_factory import StoreLike


@dataclass(slots=True)
class PlannedCall:
    """One (prompt, answer slot) request that has no usable stored result yet: its fingerprint (a batch
    request's custom id), answer slot, prompt, and what is sent."""

    fingerprint: str
    answer_id: str
    prompt_id: str
    messages: list[dict[str, Any]]
    system: str | None


def reusable(previous: CallResult | None, retry_failed: bool) -> bool:
    """Whether a stored result stands in for the call: an answer always, a stored error unless ``retry_failed``."""
    return previous is not None and (previous.ok or not retry_failed)


@dataclass(frozen=True, slots=True)
class AnswerSlot:
    """One answer a prompt asks for: provider, sample index (0-based) and its id in the task."""

    answer_id: str
    provider: ProviderConfig
    sample: int


def answer_slots(providers: list[ProviderConfig] | tuple[ProviderConfig, ...], samples: int) -> list[AnswerSlot]:
    """Every slot of a prompt, provider by provider."""
    if samples == 1:
        return [AnswerSlot(p.source_id, p, 0) for p in providers]
    return [AnswerSlot(f"{p.source_id}#{i + 1}", p, i) for p in providers for i in range(samples)]


class SlotFingerprints:
    """Request fingerprints of every slot of a prompt (provider identities computed once)."""

    def __init__(self, slots: list[AnswerSlot]) -> None:
        self.slots = slots
        self._identities = {slot.provider.source_id: provider_identity(slot.provider) for slot in slots}

    def of(self, messages: list[dict[str, Any]], system: str | None) -> dict[str, str]:
        """Answer id -> fingerprint of the request that slot sends for this prompt."""
        return {
            slot.answer_id: request_fingerprint(
                self._identities[slot.provider.source_id],
                messages,
                system_text(system, slot.provider.system_prompt),
                slot.sample,
            )
            for slot in self.slots
        }


class Prompt(Protocol):
    """What a fingerprint needs of a prompt (``prompts.reader.PromptRecord`` is one)."""

    @property
    def messages(self) -> list[dict[str, Any]]: ...

    @property
    def system(self) -> str | None: ...


P = TypeVar("P", bound=Prompt)


class StoredChunk(NamedTuple, Generic[P]):
    """A chunk of prompts, each prompt's slot fingerprints (answer id -> fingerprint, in prompt order)
    and the results the store holds for any of them (fingerprint -> result; missing ones are absent)."""

    prompts: list[P]
    fingerprints: list[dict[str, str]]
    stored: dict[str, CallResult]


def stored_results(
    store: StoreLike | None, fingerprints: SlotFingerprints, prompts: Iterable[P], chunk_size: int
) -> Iterator[StoredChunk[P]]:
    """The prompts in chunks of ``chunk_size``, with their slots' fingerprints and stored results.

    One ``get_many`` per chunk, made when the chunk is reached (never ahead: a run reads what its
    previous chunk committed). ``store`` None stands for a store not created yet: nothing is stored.
    """
    remaining = iter(prompts)
    while chunk := list(islice(remaining, chunk_size)):
        fps = [fingerprints.of(prompt.messages, prompt.system) for prompt in chunk]
        stored = store.get_many(fp for by_slot in fps for fp in by_slot.values()) if store is not None else {}
        yield StoredChunk(chunk, fps, stored)
