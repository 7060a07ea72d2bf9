"""Quality flags on answers, recorded in task metadata for reviewers and used by template filters.

Flags, and when they are set:

- ``empty``: the text is whitespace only.
- ``truncated``: the provider stopped at the length limit (finish reason ``length`` / ``max_tokens``).
- ``refusal``: the opening of the answer (first 300 characters) matches a refusal phrase. The phrases
  are plain substrings in English, Spanish, French, German, Portuguese, Italian, Dutch, Russian,
  Chinese, Japanese and Korean (``REFUSAL_PHRASES``): a heuristic for review, not a classifier.
- ``duplicate``: identical to another answer of the same task after case and whitespace folding.
- ``near_duplicate``: not identical, but word-trigram Jaccard similarity ≥ 0.9 with another answer.
- ``short``: fewer than 3 words, or under a tenth of the longest other answer when that one has at
  least 60 words.
"""

from __future__ import annotations

TRUNCATED_REASONS = frozenset({"length", "max_tokens"})
REFUSAL_WINDOW = 300
NEAR_DUPLICATE_JACCARD = 0.9
SHORT_MIN_WORDS = 3
SHORT_RATIO = 0.1
SHORT_REFERENCE_WORDS = 60

REFUSAL_PHRASES: tuple[str, ...] = (
    # English
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm unable to help",
    "i am unable to help",
    "i won't be able to help",
    "i can't provide",
    "i cannot provide",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i can't comply",
    "i cannot comply",
    "as an ai language model, i cannot",
    "i must decline",
    "i'm not able to help",
    # Spanish
    "lo siento, pero no puedo",
    "no puedo ayudar con",
    "no puedo ayudarte con",
    "no puedo proporcionar",
    # French
    "je suis désolé, mais je ne peux pas",
    "je ne peux pas vous aider",
    "je ne peux pas t'aider",
    "je ne peux pas fournir",
    # German
    "es tut mir leid, aber ich kann",
    "ich kann ihnen dabei nicht helfen",
    "ich kann dir dabei nicht helfen",
    "ich kann keine",
    # Portuguese
    "desculpe, mas não posso",
    "não posso ajudar com",
    # Italian
    "mi dispiace, ma non posso",
    "non posso aiutarti",
    # Dutch
    "het spijt me, maar ik kan",
    "ik kan je daar niet mee helpen",
    # Russian
    "извините, но я не могу",
    "я не могу помочь",
    "я не могу предоставить",
    # Chinese
    "抱歉，我无法",
    "对不起，我不能",
    "我无法提供",
    "我不能帮助",
    # Japanese
    "申し訳ありませんが",
    "お手伝いできません",
    # Korean
    "죄송하지만",
    "도와드릴 수 없습니다",
)


def _fold(text: str) -> str:
    # Same as re.sub(r"\s+", " ", text).strip().lower() (str.split and re's \s use the same
    # whitespace definition), about three times faster.
    return " ".join(text.split()).lower()


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    if len(words) < 3:
        return {tuple(words)}
    return set(zip(words, words[1:], words[2:]))  # the word trigrams, ~3x faster than slicing


def answer_flags(text: str, finish_reason: str | None) -> list[str]:
    """Flags that depend on one answer alone: ``empty``, ``truncated``, ``refusal``."""
    flags = []
    if not text.strip():
        flags.append("empty")
    if finish_reason in TRUNCATED_REASONS:
        flags.append("truncated")
    opening = _fold(text[:REFUSAL_WINDOW]).replace("’", "'")
    if any(phrase in opening for phrase in REFUSAL_PHRASES):
        flags.append("refusal")
    return flags


def task_flags(answers: dict[str, tuple[str, str | None]]) -> dict[str, list[str]]:
    """Flags for every answer of a task, by id: the single-answer flags plus the comparative ones.

    ``answers`` maps an answer id to ``(text, finish_reason)``.
    """
    # Lower-casing first and splitting once gives the same words as _fold (checked on every code point).
    words = {key: text.lower().split() for key, (text, _) in answers.items()}
    folded = {key: " ".join(w) for key, w in words.items()}
    shingles = {key: _trigrams(w) for key, w in words.items()}
    keys = list(answers)
    similar = {  # each unordered pair once
        (a, b): _jaccard(shingles[a], shingles[b]) >= NEAR_DUPLICATE_JACCARD
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if folded[a] and folded[b]
    }
    flags: dict[str, list[str]] = {}
    for key, (text, finish_reason) in answers.items():
        found = answer_flags(text, finish_reason)
        others = [other for other in keys if other != key]
        if folded[key] and any(folded[other] == folded[key] for other in others):
            found.append("duplicate")
        elif any(similar.get((key, other)) or similar.get((other, key)) for other in others):
            found.append("near_duplicate")
        longest_other = max((len(words[other]) for other in others), default=0)
        count = len(words[key])
        if folded[key] and (
            count < SHORT_MIN_WORDS or (longest_other >= SHORT_REFERENCE_WORDS and count < SHORT_RATIO * longest_other)
        ):
            found.append("short")
        flags[key] = found
    return flags


def _jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)  # |a ∪ b| without building the union


def all_identical(answers: dict[str, tuple[str, str | None]]) -> bool:
    """True when a task has two or more answers and they are all the same after folding."""
    folded = {_fold(text) for text, _ in answers.values()}
    return len(answers) >= 2 and len(folded) == 1
