"""Keeping secrets out of what we print and store: any run of a secret's characters in a text is hidden."""

from __future__ import annotations

# Error texts kept in the store and printed are capped at this many characters.
MAX_ERROR_TEXT = 500
# Hide every run of this many characters of a secret: providers echo keys cut to a prefix or suffix.
SECRET_WINDOW = 8


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every run of ``SECRET_WINDOW`` or more characters of a secret replaced by ``***``, capped.

    Providers and gateways echo truncated keys ("Incorrect API key provided: sk-proj-****abcd", or the
    first 12 characters): every ``SECRET_WINDOW``-character window of a secret found in ``text`` is
    hidden, and overlapping or adjacent hidden windows become one ``***``. A secret shorter than the
    window is hidden where it appears whole.
    """
    hidden = bytearray(len(text))  # 1 for each character to hide
    for secret in secrets:
        if len(secret) < SECRET_WINDOW:
            start = text.find(secret) if secret else -1
            while start >= 0:
                hidden[start : start + len(secret)] = b"\1" * len(secret)
                start = text.find(secret, start + 1)
            continue
        windows = {secret[i : i + SECRET_WINDOW] for i in range(len(secret) - SECRET_WINDOW + 1)}
        for start in range(len(text) - SECRET_WINDOW + 1):
            if text[start : start + SECRET_WINDOW] in windows:
                hidden[start : start + SECRET_WINDOW] = b"\1" * SECRET_WINDOW
    if any(hidden):
        parts: list[str] = []
        for index, char in enumerate(text):
            if not hidden[index]:
                parts.append(char)
            elif index == 0 or not hidden[index - 1]:
                parts.append("***")
        text = "".join(parts)
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "…"
