"""The song document format: a title line, a blank line, then the lyrics.

Training writes every song this way (followed by end-of-text), so a model trained by our pipeline
writes its own title first. Models that never learned the format (stock GPT-2) still get a title:
`derive_title` picks one from the lyrics, deterministically.
"""

import re
from collections import Counter

MAX_TITLE_CHARS = 60
MAX_TITLE_WORDS = 10
_EDGE_PUNCT = " \t\"'“”‘’.,;:!?-–—()[]"


def format_document(title: str, lyrics: str) -> str:
    return f"{title.strip()}\n\n{lyrics.strip()}"


def looks_like_title(line: str) -> bool:
    line = line.strip()
    return (
        0 < len(line) <= MAX_TITLE_CHARS
        and len(line.split()) <= MAX_TITLE_WORDS
        and any(ch.isalpha() for ch in line)
        and not line.startswith("[")
    )


def split_document(text: str) -> tuple[str | None, str]:
    """Return (title or None, lyrics). A title counts only as a short first line followed by a blank one."""
    text = text.strip("\n")
    first, newline, rest = text.partition("\n")
    if newline and rest.startswith("\n") and looks_like_title(first):
        return first.strip(), rest.strip()
    return None, text.strip()


def live_parts(text: str) -> tuple[str, str]:
    """(title, lyrics) of a song still being written, shown as the finished page will show them: the
    title apart once its line is followed by a blank one (until then it may still be a lyric line), and
    any run of blank lines as one."""
    title, lyrics = split_document(text)
    if title is None:
        lyrics = text.lstrip("\n")
    return title or "", re.sub(r"\n\s*\n(\s*\n)+", "\n\n", lyrics)


def _clean_title(line: str) -> str:
    line = re.sub(r"\s+", " ", line).strip(_EDGE_PUNCT)
    words = line.split()[:MAX_TITLE_WORDS]
    title = " ".join(words)
    while len(title) > MAX_TITLE_CHARS and len(words) > 1:
        words.pop()
        title = " ".join(words)
    title = title[:MAX_TITLE_CHARS].strip(_EDGE_PUNCT)
    return title[:1].upper() + title[1:]


def derive_title(lyrics: str) -> str | None:
    """The most repeated lyric line (the hook), else the first line; None only if no line has a letter."""
    lines = [ln.strip() for ln in lyrics.splitlines()]
    lines = [ln for ln in lines if any(ch.isalpha() for ch in ln) and not ln.startswith("[")]
    if not lines:
        return None
    counts = Counter(_clean_title(ln).lower() for ln in lines)
    best = max(lines, key=lambda ln: (counts[_clean_title(ln).lower()], -lines.index(ln)))
    return _clean_title(best) or None
