"""The request fingerprint: a hash of everything that changes an answer, and nothing else.

Two requests are the same when the same kind of API is asked, for the same model, with the same
parameters, the same system prompt and the same messages (and sample index). Where they are sent is
not part of it: a base URL, a hostname, a port or a gateway in front of the provider changes how the
answer travels, not the answer, so moving a provider reuses every stored answer. Nor is the API key,
the HTTP client or any limit. A provider's ``endpoint_id`` joins the identity when set: for servers
where one model name can mean different weights (two vLLM servers each serving a fine-tune as
``llama-3``), it names the weights, and changing it asks again.

Stores written before the base URL left the identity keep their answers under the *legacy*
fingerprint (:func:`legacy_provider_identity`, the base URL in); lookups fall back to it
(``providers.slots.read_results``) and a run moves what it found to the current key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from common.images import identity_view
from providers.config import ProviderConfig


def _identity_json(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def provider_identity(config: ProviderConfig) -> str:
    """The part of every fingerprint that a provider contributes: kind, model, parameters (and ``endpoint_id``
    when set). Never the base URL, the key, the client or a limit."""
    identity: dict[str, Any] = {"kind": config.kind, "model": config.model, "params": config.wire_params()}
    if config.endpoint_id is not None:
        identity["endpoint_id"] = config.endpoint_id
    return _identity_json(identity)


def legacy_provider_identity(config: ProviderConfig) -> str | None:
    """The identity fingerprints were made with before the base URL left it (kind, base URL, model,
    parameters): answers stored then are found through it. None when ``endpoint_id`` is set: an answer
    stored without one does not say which weights gave it."""
    if config.endpoint_id is not None:
        return None
    return _identity_json(
        {
            "kind": config.kind,
            "base_url": config.effective_base_url,
            "model": config.model,
            "params": config.wire_params(),
        }
    )


def same_requests(providers: Sequence[ProviderConfig]) -> list[tuple[int, int]]:
    """Pairs (earlier, later) of providers that send the same requests (kind, model, parameters, system prompt,
    no ``endpoint_id`` telling them apart) to different base URLs: to the response store they are one
    provider, so their answers would be stored as one. A config is refused for it (``flows.config``)."""
    first: dict[tuple[str, str | None], tuple[int, str]] = {}
    pairs = []
    for index, provider in enumerate(providers):
        seen = first.setdefault(
            (provider_identity(provider), provider.system_prompt), (index, provider.effective_base_url)
        )
        if seen[1] != provider.effective_base_url:
            pairs.append((seen[0], index))
    return pairs


def request_fingerprint(identity: str, messages: list[dict[str, Any]], system: str | None, sample: int = 0) -> str:
    """Hex digest over the provider identity, the exact messages (images by their content:
    ``common.images.identity_view``), the system prompt and the sample index."""
    payload = json.dumps([identity, system, identity_view(messages), sample], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


# The same digest from parts serialised once: a prompt's messages are the same for every slot, a provider's
# identity the same for every prompt. These build the exact payload of request_fingerprint (a JSON list is
# its items, each encoded alone, joined by "," within "[" and "]").
_PAYLOAD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encoded(value: Any) -> str:
    """A payload item (an identity, a system prompt, the messages) as it appears in the fingerprint's payload
    (messages with images by their identity view, as :func:`request_fingerprint` has them)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = identity_view(value)
    return _PAYLOAD.encode(value)


def fingerprint_of_parts(identity: str, system: str, messages: str, sample: int) -> str:
    """:func:`request_fingerprint` from its items, each already :func:`encoded` (the same digest)."""
    return hashlib.sha256(f"[{identity},{system},{messages},{sample}]".encode()).hexdigest()
