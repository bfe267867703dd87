"""Song IDs: every integer 0 … 2**63-1 names exactly one song."""

MAX_SONG_ID = 2**63 - 1


class InvalidSongId(ValueError):
    """Raised for anything that is not an integer in 0 … 2**63-1."""


def parse_song_id(value: object) -> int:
    """Turn user input into a song ID, refusing anything ambiguous.

    Strings must be plain decimal digits: "1.5", "1e3", "+7", " 7" and "-1" are all refused so that
    one song never has two spellings (which would split caches and votes).
    """
    if isinstance(value, bool):
        raise InvalidSongId(f"invalid song ID {value!r}: must be an integer 0 … {MAX_SONG_ID}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 1 and value.startswith("0"):
            raise InvalidSongId(f"invalid song ID {value!r}: no leading zeros")
        number = int(value)
    else:
        raise InvalidSongId(f"invalid song ID {value!r}: must be an integer 0 … {MAX_SONG_ID}")
    if not 0 <= number <= MAX_SONG_ID:
        raise InvalidSongId(f"invalid song ID {value!r}: out of range 0 … {MAX_SONG_ID}")
    return number
