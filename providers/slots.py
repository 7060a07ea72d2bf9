"""Answer slots: which answers a prompt gets, and the ``source_id`` each carries in a task.

With ``samples_per_provider: 1`` a slot's id is the provider's ``source_id``. With k > 1 samples the
ids are ``<source_id>#1`` … ``<source_id>#k``: ``#`` cannot appear in a configured source_id, so the
ids stay unique, and the part before ``#`` names the provider (metadata also records ``provider`` and
``sample`` for every answer). Sample n is sent as the same request; the sample index is part of the
request fingerprint, so each sample is stored, resumed and reused on its own.

:func:`stored_results` is the one walk from prompts to what the store holds for their slots (a run,
its status and a sharded batch's merge all read the store this way). It reads through
:func:`read_results`: a result is looked up under its fingerprint and, when not found there (or found
as an error), under its legacy fingerprint (``providers.fingerprint``: stores written while the base
URL was part of the identity); a run moves what it found there to the current key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from providers.base import system_text
from providers.config import ProviderConfig
from providers.fingerprint import (
    encoded,
    fingerprint_of_parts,
    legacy_provider_identity,
    provider_identity,
)
from providers.result import CallResult
from providers.store import StoreError
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
    """Request fingerprints of every slot of a prompt (provider identities computed once, a prompt's messages
    serialised once for all its slots)."""

    def __init__(self, slots: list[AnswerSlot]) -> None:
        self.slots = slots
        self._identities = {slot.provider.source_id: encoded(provider_identity(slot.provider)) for slot in slots}
        self._legacy: dict[str, str] = {}
        for slot in slots:
            legacy = legacy_provider_identity(slot.provider)
            if legacy is not None:
                self._legacy[slot.provider.source_id] = encoded(legacy)

    @property
    def has_legacy(self) -> bool:
        """Whether any slot has a legacy fingerprint (a provider without ``endpoint_id``)."""
        return bool(self._legacy)

    def of(self, messages: list[dict[str, Any]], system: str | None) -> dict[str, str]:
        """Answer id -> fingerprint of the request that slot sends for this prompt."""
        return self._digests(self._identities, messages, system, None)

    def legacy_of(
        self, messages: list[dict[str, Any]], system: str | None, answer_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        """Answer id -> the legacy fingerprint of that slot's request (base URL in the identity), for the slots
        in ``answer_ids`` (all if None) that have one."""
        return self._digests(self._legacy, messages, system, answer_ids)

    def _digests(
        self,
        identities: dict[str, str],
        messages: list[dict[str, Any]],
        system: str | None,
        only: Collection[str] | None,
    ) -> dict[str, str]:
        payload_messages = encoded(messages)
        systems: dict[str | None, str] = {}  # a provider's system prompt joined to the prompt's, encoded once
        digests = {}
        for slot in self.slots:
            identity = identities.get(slot.provider.source_id)
            if identity is None or (only is not None and slot.answer_id not in only):
                continue
            text = system_text(system, slot.provider.system_prompt)
            payload_system = systems.get(text)
            if payload_system is None:
                payload_system = systems[text] = encoded(text)
            digests[slot.answer_id] = fingerprint_of_parts(identity, payload_system, payload_messages, slot.sample)
        return digests


def read_results(
    store: StoreLike,
    fingerprints: Iterable[str],
    legacy_of: Callable[[list[str]], dict[str, str]],
    migrate: bool = False,
) -> dict[str, CallResult]:
    """The stored results for these fingerprints, keyed by them: each found under its fingerprint or, if not
    there (or only an error is), under its legacy one (``legacy_of``: fingerprints -> their legacy
    fingerprints, asked only for those). An answer under either key beats an error under the other.

    ``migrate`` (a run, which holds the store): what was found under a legacy key is moved to the current
    one, so the next lookup needs one query and a later change of base URL still finds it. Moving is
    best effort: if the store refuses it, the answers are still read under their legacy keys.
    """
    wanted = list(dict.fromkeys(fingerprints))
    found = store.get_many(wanted)
    unsure = [fp for fp in wanted if (result := found.get(fp)) is None or not result.ok]
    legacy = legacy_of(unsure) if unsure else {}
    if not legacy:
        return found
    current_of = {old: fp for fp, old in legacy.items()}
    moves: list[tuple[str, str, bool]] = []  # (legacy key, current key, an error is under the current key)
    for old, result in store.get_many(current_of).items():
        fp = current_of[old]
        current = found.get(fp)
        if current is None or (result.ok and not current.ok):
            found[fp] = result
            moves.append((old, fp, current is not None))
    if migrate and moves:
        move_results(store, moves)
    return found


def move_results(store: StoreLike, moves: list[tuple[str, str, bool]]) -> None:
    """Move results from legacy keys to current ones (``(legacy, current, replaces an error)``), in one commit;
    a key already taken by another result is left alone. Best effort (see :func:`read_results`)."""
    try:
        with store.transaction():
            for old, fp, replaces_error in moves:
                if replaces_error:
                    store.execute("DELETE FROM responses WHERE fingerprint = ? AND ok = 0", (fp,))
                store.execute(
                    "UPDATE responses SET fingerprint = ? WHERE fingerprint = ?"
                    " AND NOT EXISTS (SELECT 1 FROM responses WHERE fingerprint = ?)",
                    (fp, old, fp),
                )
    except StoreError:
        pass  # still read under the legacy keys


class Prompt(Protocol):
    """What a fingerprint needs of a prompt (``prompts.reader.PromptRecord`` is one)."""

    @property
    def messages(self) -> list[dict[str, Any]]: ...

    @property
    def system(self) -> str | None: ...


P = TypeVar("P", bound=Prompt)


class StoredChunk(NamedTuple, Generic[P]):
    """A chunk of prompts, each prompt's slot fingerprints (answer id -> fingerprint, in prompt order)
    and the results the store holds for any of them (fingerprint -> result; missing ones are absent), found
    under the fingerprint or its legacy one."""

    prompts: list[P]
    fingerprints: list[dict[str, str]]
    stored: dict[str, CallResult]


def chunk_results(
    store: StoreLike,
    fingerprints: SlotFingerprints,
    prompts: list[P],
    by_prompt: list[dict[str, str]],
    migrate: bool = False,
) -> dict[str, CallResult]:
    """What the store holds for these prompts' slots (``by_prompt``: each prompt's ``fingerprints.of``), by
    fingerprint: :func:`read_results`, legacy fingerprints computed only for the slots not answered."""

    def legacy_of(unsure: list[str]) -> dict[str, str]:
        if not fingerprints.has_legacy:
            return {}
        wanted = set(unsure)
        legacy: dict[str, str] = {}
        for prompt, by_slot in zip(prompts, by_prompt):
            answer_ids = {answer_id for answer_id, fp in by_slot.items() if fp in wanted}
            if answer_ids:
                for answer_id, old in fingerprints.legacy_of(prompt.messages, prompt.system, answer_ids).items():
                    legacy[by_slot[answer_id]] = old
        return legacy

    return read_results(store, (fp for by_slot in by_prompt for fp in by_slot.values()), legacy_of, migrate)


def stored_results(
    store: StoreLike | None,
    fingerprints: SlotFingerprints,
    prompts: Iterable[P],
    chunk_size: int,
    migrate: bool = False,
) -> Iterator[StoredChunk[P]]:
    """The prompts in chunks of ``chunk_size``, with their slots' fingerprints and stored results.

    One lookup per chunk (:func:`chunk_results`), made when the chunk is reached (never ahead: a run
    reads what its previous chunk committed). ``store`` None stands for a store not created yet: nothing
    is stored. ``migrate``: see :func:`read_results` (a run's walks; never a read-only store's).
    """
    remaining = iter(prompts)
    while chunk := list(islice(remaining, chunk_size)):
        fps = [fingerprints.of(prompt.messages, prompt.system) for prompt in chunk]
        stored = chunk_results(store, fingerprints, chunk, fps, migrate) if store is not None else {}
        yield StoredChunk(chunk, fps, stored)
