"""The shape of a song's lyrics: sections (blank-line separated) of sung lines, verse or chorus.

A line's `key` is its text normalised (case, punctuation), so "Oh oh, take me home" and "oh oh take me
home!" are the same line musically: every repeat of a line is sung to the same phrase, which is what
makes a chorus sound like a chorus.
"""

import re
from collections import Counter
from dataclasses import dataclass

from billionsongs.music.syllables import Syllable, split_line

_CHORUS_WORDS = ("chorus", "hook", "refrain")


@dataclass(frozen=True)
class Line:
    index: int  # position in lyrics.splitlines(), so a page can find the line it rendered
    text: str
    words: tuple[tuple[Syllable, ...], ...]
    key: str

    @property
    def syllables(self) -> list[Syllable]:
        return [s for word in self.words for s in word]


@dataclass(frozen=True)
class Section:
    kind: str  # "verse" or "chorus"
    lines: tuple[Line, ...]


def line_key(text: str) -> str:
    key = " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
    return key or text.strip()


def is_header(text: str) -> bool:
    """"[Chorus]", "[Verse 2]": section labels the model sometimes writes; they are not sung."""
    text = text.strip()
    return text.startswith("[") and text.endswith("]")


def parse_form(lyrics: str) -> list[Section]:
    """Split lyrics into sections; a section is a chorus if labelled so or if most of its lines recur elsewhere."""
    blocks: list[tuple[bool, list[Line]]] = [(False, [])]
    for index, raw in enumerate(lyrics.splitlines()):
        text = raw.strip()
        if not text or is_header(text):
            if blocks[-1][1] or is_header(text):
                blocks.append((is_header(text) and any(w in text.lower() for w in _CHORUS_WORDS), []))
            continue
        words = tuple(tuple(w) for w in split_line(text))
        blocks[-1][1].append(Line(index, text, words, line_key(text)))
    blocks = [(labelled, lines) for labelled, lines in blocks if lines]
    block_count = Counter(key for _, lines in blocks for key in {ln.key for ln in lines})
    sections = []
    for labelled, lines in blocks:
        recurring = sum(block_count[ln.key] > 1 for ln in lines)
        kind = "chorus" if labelled or recurring * 2 > len(lines) else "verse"
        sections.append(Section(kind, tuple(lines)))
    return sections
