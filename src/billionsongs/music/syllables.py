"""Split lyric words into sung syllables, each with a stress level (1 primary, 2 secondary, 0 none).

Stress decides where a syllable may land in the bar, so it comes from the CMU pronouncing
dictionary (via `pronouncing`) when the word is in it. The *text* split comes from pyphen's
hyphenation patterns, falling back to a vowel-group heuristic when pyphen keeps a word whole that
the dictionary says has more syllables ("city" -> "ci-ty"). The pieces of a word always join back
to the exact word as written, punctuation included, so karaoke text reproduces the lyrics.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import pronouncing
import pyphen

_HYPHENATOR = pyphen.Pyphen(lang="en_US")
# Short grammatical words are unstressed in singing even where the dictionary marks them stressed.
_FUNCTION_WORDS = """
a an the and or but nor so if as at by for from in into of off on onto to up upon with than that then
i me my you your he him his she her it its we us our they them their is am are was were be been being
do does did has have had will would shall should can could may might must not no yeah oh ooh ah la na
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


@dataclass(frozen=True)
class Syllable:
    text: str  # the piece of the written word, punctuation included
    stress: int  # 1 primary, 2 secondary, 0 unstressed


def _letters(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower()).strip("'")


def _vowel_groups(core: str) -> list[str]:
    """Heuristic split of a lowercase word into syllable-sized chunks (V-CV, VC-CV), silent final e."""
    spans = [m.span() for m in re.finditer(r"[aeiouy]+", core)]
    if len(spans) > 1 and core.endswith("e") and spans[-1] == (len(core) - 1, len(core)) \
            and not re.search(r"[^aeiouy]le$", core):
        spans.pop()  # silent e: "home", "time"
    if len(spans) < 2:
        return [core]
    cuts = []
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        consonants = start - end
        cuts.append(end if consonants <= 1 else end + 1)
    return [core[a:b] for a, b in zip([0] + cuts, cuts + [len(core)], strict=True)]


def load_dictionary() -> None:
    """Load the CMU dictionary now (0.2-0.5 s, 135k words) rather than on the first syllable split: a
    server calls this at start so that its first visitor does not wait for it (`web/wsgi.py`)."""
    pronouncing.init_cmu()


def _cmu_stresses(core: str) -> list[int] | None:
    phones = pronouncing.phones_for_word(core)
    return [int(s) for s in pronouncing.stresses(phones[0])] if phones else None


def _split_text(word: str, n: int | None) -> list[str]:
    """Cut `word` into pieces: pyphen first, the vowel heuristic when that disagrees with the dictionary."""
    core = re.sub(r"[^a-z]", "", word.lower())
    groups = _HYPHENATOR.inserted(core, hyphen="-").split("-")
    if len(groups) != (n or max(2, len(groups))):
        vowels = _vowel_groups(core)
        if n is None or len(vowels) == n or len(groups) < len(vowels) <= n:
            groups = vowels
    if n is not None:
        while len(groups) > n:  # merge the last two until it fits
            groups = groups[:-2] + [groups[-2] + groups[-1]]
    return _map_groups(word, groups)


def _map_groups(word: str, groups: list[str]) -> list[str]:
    """Place cut points found on the letters-only core back into the written word."""
    bounds = {sum(len(g) for g in groups[: i + 1]) for i in range(len(groups) - 1)}
    pieces, start, seen = [], 0, 0
    for i, ch in enumerate(word):
        if ch.isalpha():
            if seen in bounds and i > start:
                pieces.append(word[start:i])
                start = i
            seen += 1
    return pieces + [word[start:]]


@lru_cache(maxsize=65536)
def split_word(word: str) -> tuple[Syllable, ...]:
    """The sung syllables of one whitespace-separated lyric token ("walking," -> walk, ing,)."""
    core = _letters(word)
    if not core:
        return (Syllable(word, 0),)
    stresses = _cmu_stresses(core)
    pieces = _split_text(word, len(stresses) if stresses else None)
    if stresses is None or len(stresses) != len(pieces):
        stresses = [1 if i == 0 else 0 for i in range(len(pieces))]  # English default: stress the first
    if len(pieces) == 1:
        stresses = [0 if core in FUNCTION_WORDS else 1]
    return tuple(Syllable(p, s) for p, s in zip(pieces, stresses, strict=True))


def split_line(line: str) -> list[tuple[Syllable, ...]]:
    """Syllables per word of a lyric line; words are the whitespace-separated tokens."""
    return [split_word(w) for w in line.split()]
