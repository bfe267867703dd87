"""Chant guard: a song may not repeat one or two words for more than `max_words` words in a row.

Why: lyrics models, like the lyrics they learn from, sometimes fall into "oh oh oh oh …" or
"yeah yeah yeah …" for lines on end. Such a song is dull, and its loop also matches the same loop
somewhere in the training text: every one of the bundled model's songs that shared a 12-word run with
its training lyrics (3.1% of 200) did so through a chant like this, none through real lines.

How: before each draw, the row's last words are decoded; when the last `max_words` of them hold at most
two distinct words, every token that spells one of those words is masked for this draw, so the song
has to move on. The decision depends only on the row's own tokens, so songs stay the same alone or in
any batch. A chant of up to `max_words` words ("oh oh oh oh") is left alone.
"""

import re
from collections import defaultdict

from tokenizers import Tokenizer

WORD = re.compile(r"[a-z0-9']+")
MAX_DISTINCT = 2


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


class ChantGuard:
    """Which tokens a row may not draw next, given the tokens it has written."""

    def __init__(self, tokenizer: Tokenizer, max_words: int):
        self.tokenizer = tokenizer
        self.max_words = max_words
        self._ids_by_word: dict[str, list[int]] | None = None

    def _token_words(self) -> dict[str, list[int]]:
        """Tokens that spell exactly one word (" Oh", "oh,", "OH"), by that word; built on first use."""
        if self._ids_by_word is None:
            vocab = self.tokenizer.get_vocab_size()
            texts = self.tokenizer.decode_batch([[i] for i in range(vocab)], skip_special_tokens=False)
            self._ids_by_word = defaultdict(list)
            for token_id, text in enumerate(texts):
                found = words(text)
                if len(found) == 1:
                    self._ids_by_word[found[0]].append(token_id)
        return self._ids_by_word

    def banned(self, tokens: list[int]) -> list[int]:
        """Token IDs to mask before the next draw: empty unless the song is chanting."""
        if self.max_words <= 0 or len(tokens) < self.max_words:
            return []
        # A word is at most a few tokens; this window always holds the last `max_words` words or more.
        tail = words(self.tokenizer.decode(tokens[-4 * self.max_words:], skip_special_tokens=False))
        if len(tail) < self.max_words:
            return []
        chant = set(tail[-self.max_words:])
        if len(chant) > MAX_DISTINCT:
            return []
        table = self._token_words()
        return [token_id for word in chant for token_id in table.get(word, ())]
