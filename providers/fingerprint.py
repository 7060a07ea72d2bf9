"""The request fingerprint: a hash of everything that changes an answer, and nothing else (never the key)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from providers.config import ProviderConfig


def provider_identity(config: ProviderConfig) -> str:
    """The part of every fingerprint that a provider contributes: kind, endpoint, model, parameters."""
    return json.dumps(
        {
            "kind": config.kind,
            "base_url": config.effective_base_url,
            "model": config.model,
            "params": config.wire_params(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def request_fingerprint(identity: str, messages: list[dict[str, Any]], system: str | None, sample: int = 0) -> str:
    """Hex digest over the provider identity, the exact messages, the system prompt and the sample index."""
    payload = json.dumps([identity, system, messages, sample], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()
