"""The quality gate: which written songs may enter the pregenerated pool.

A song that fails stays stored and reachable by its ID (every number has its song); it is only kept out
of the pool, so random picks show the better ones. The checks are cheap and explainable:

- a title;
- a sensible length: MIN_LINES … MAX_LINES non-empty lines and MIN_CHARS … MAX_CHARS characters;
- no degenerate repetition: no single line making up more than half of all lines, and enough distinct
  words (distinct / total at least MIN_DISTINCT_WORDS, for songs of 20 words or more).
"""

import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

NO_TITLE = "no title"
TOO_SHORT = "too short"
TOO_LONG = "too long"
REPEATED_LINE = "repeated line"
REPEATED_WORDS = "repeated words"


@dataclass(frozen=True)
class Rules:
    min_lines: int = 4
    max_lines: int = 120
    min_chars: int = 80
    max_chars: int = 6000
    min_distinct_words: float = 0.25

    @classmethod
    def from_settings(cls) -> "Rules":
        from django.conf import settings

        return cls(settings.QUALITY_MIN_LINES, settings.QUALITY_MAX_LINES, settings.QUALITY_MIN_CHARS,
                   settings.QUALITY_MAX_CHARS, settings.QUALITY_MIN_DISTINCT_WORDS)


def check(title: str, lyrics: str, rules: Rules | None = None) -> str:
    """"" when the song passes, else the first reason it fails (one of the constants above)."""
    rules = rules or Rules.from_settings()
    if not title.strip() or title.strip() == "Untitled":
        return NO_TITLE
    lines = [line.strip().lower() for line in lyrics.splitlines() if line.strip()]
    chars = len(lyrics.strip())
    if len(lines) < rules.min_lines or chars < rules.min_chars:
        return TOO_SHORT
    if len(lines) > rules.max_lines or chars > rules.max_chars:
        return TOO_LONG
    if len(lines) >= 2 and Counter(lines).most_common(1)[0][1] * 2 > len(lines):
        return REPEATED_LINE
    words = _WORD.findall(lyrics.lower())
    if len(words) >= 20 and len(set(words)) < rules.min_distinct_words * len(words):
        return REPEATED_WORDS
    return ""


def report(verdicts: list[str]) -> str:
    """A one-screen summary of verdicts ("" = passed): rejection rate and the reasons."""
    total = len(verdicts)
    rejected = Counter(v for v in verdicts if v)
    lines = [f"songs checked: {total}",
             f"rejected: {sum(rejected.values())} ({100 * sum(rejected.values()) / max(1, total):.1f}%)"]
    lines += [f"  {reason}: {count}" for reason, count in rejected.most_common()]
    return "\n".join(lines)
