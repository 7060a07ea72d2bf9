"""Answer slots: which answers a prompt gets, and the ``source_id`` each carries in a task.

With ``samples_per_provider: 1`` a slot's id is the provider's ``source_id``. With k > 1 samples the
ids are ``<source_id>#1`` … ``<source_id>#k``: ``#`` cannot appear in a configured source_id, so the
ids stay unique, and the part before ``#`` names the provider (metadata also records ``provider`` and
``sample`` for every answer). Sample n is sent as the same request; the sample index is part of the
request fingerprint, so each sample is stored, resumed and reused on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.base import system_text
from providers.config import ProviderConfig
from providers.fingerprint import provider_identity, request_fingerprint


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
