"""Syllables: pieces join back to the word, and stress comes from the dictionary where it knows the word."""

from billionsongs.music.syllables import split_line, split_word


def texts(word: str) -> list[str]:
    return [s.text for s in split_word(word)]


def stresses(word: str) -> list[int]:
    return [s.stress for s in split_word(word)]


def test_pieces_join_to_the_written_word():
    for word in ["walking", "city,", "“Don't”", "rain-soaked", "1999", "—", "(baby)", "zorbulating", "café", "x"]:
        assert "".join(texts(word)) == word
        assert all(texts(word))


def test_dictionary_syllables_and_stress():
    assert texts("walking") == ["walk", "ing"] and stresses("walking") == [1, 0]
    assert stresses("tonight") == [0, 1]
    assert texts("city") == ["ci", "ty"]  # pyphen keeps it whole; the dictionary says two
    assert len(texts("beautiful")) == 3 and stresses("beautiful")[0] == 1
    assert stresses("home") == [1] and stresses("the") == [0] and stresses("I") == [0]


def test_unknown_words_fall_back_to_a_heuristic():
    assert len(texts("zorbulating")) == 4 and stresses("zorbulating")[0] == 1
    assert len(split_line("Every light in the city")) == 5
