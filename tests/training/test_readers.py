"""Dataset readers: real CSV parsing, clear errors with file and line."""

import json

import pytest

from billionsongs.training.readers import DataError, read_songs

CSV_TEXT = (
    'song,text,artist\n'
    '"Rain, Again","I said ""hello""\nto the rain\n\n[Chorus]\nagain and again",Band\n'
    'Second,"one line\ntwo lines",Other\n'
)


def test_csv_multiline_quoted_fields_any_column_order(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    songs = list(read_songs([path], column="text", title_column="song"))
    assert [s.title for s in songs] == ["Rain, Again", "Second"]
    assert songs[0].lyrics == 'I said "hello"\nto the rain\n\nagain and again'  # tag line dropped
    assert songs[1].source.endswith("songs.csv:7")  # the first row spans lines 2-6


def test_csv_with_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff".encode() + CSV_TEXT.encode())
    assert [s.title for s in read_songs([path], column="text", title_column="song")] == ["Rain, Again", "Second"]


def test_missing_column_names_file(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    with pytest.raises(DataError, match=r"songs.csv:1: missing column 'lyrics'"):
        list(read_songs([path], column="lyrics"))


def test_malformed_quote_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('song,text\nok,"fine\nlines"\nbroken,"a "quoted" word"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:4: malformed CSV"):
        list(read_songs([path], column="text", title_column="song"))


def test_row_with_extra_field_names_line(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text('song,text\na,"x\ny"\nb,z,extra\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"extra.csv:4: 3 fields, header has 2"):
        list(read_songs([path], column="text"))


def test_jsonl_and_bad_json_line(tmp_path):
    path = tmp_path / "songs.jsonl"
    path.write_text(json.dumps({"title": "T", "lyrics": "a\nb"}) + "\n{oops\n", encoding="utf-8")
    songs = read_songs([path], column="lyrics", title_column="title")
    assert next(songs).title == "T"
    with pytest.raises(DataError, match=r"songs.jsonl:2: invalid JSON"):
        next(songs)


def test_text_folder_with_include(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "first_song.txt").write_text("la la\nla", encoding="utf-8")
    (tmp_path / "a" / "titled.lyr").write_text("My Title\n\nverse one\nverse two", encoding="utf-8")
    assert [s.title for s in read_songs([tmp_path])] == ["first song"]
    titled = list(read_songs([tmp_path], include="*.lyr"))
    assert titled[0].title == "My Title" and titled[0].lyrics == "verse one\nverse two"


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(read_songs([tmp_path / "nope.csv"]))


def test_real_songdata_csv_reads_every_row(songdata_csv):
    songs = list(read_songs([songdata_csv], column="text", title_column="song"))
    assert len(songs) == 8781
    assert all(s.title and "\n" in s.lyrics for s in songs)
