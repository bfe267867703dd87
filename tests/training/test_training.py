"""Training end to end on a small CSV: packing, caching, resume, export, eval."""

import csv
import json

import pytest

from billionsongs.cli import main
from billionsongs.model.generate import Generator
from billionsongs.training.dataset import build_streams
from billionsongs.training.readers import read_songs
from billionsongs.training.tokenizer import train_tokenizer
from billionsongs.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "lyrics.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["artist", "song", "text"])
        for i in range(80):
            chorus = f'we sing "{["oh", "hey", "la"][i % 3]}", round and round'
            writer.writerow(["Band", f"Song, No. {i}",
                             f"verse {i} walks the street\nnumber {i} in the rain\n\n{chorus}\n{chorus}"])
    return path


def config(lyrics_csv, tmp_path, **overrides) -> TrainConfig:
    base = dict(data=[str(lyrics_csv)], run="t", runs_dir=str(tmp_path), title_column="song", base="fresh:tiny",
                steps=6, batch_size=4, warmup=2, sample_every=3, save_every=3, eval_every=3, lr=3e-3)
    return TrainConfig(**{**base, **overrides})


def test_packing_puts_title_lyrics_and_separators(lyrics_csv, tmp_path):
    songs = list(read_songs([lyrics_csv], title_column="song"))
    tok = train_tokenizer([s.lyrics for s in songs], 300)
    eot = tok.token_to_id("<|endoftext|>")
    streams = build_streams(songs, tok, eot, tmp_path, val_fraction=0.2)
    assert streams.train_songs + streams.val_songs == 80 and streams.val_songs > 0
    assert list(streams.train).count(eot) == streams.train_songs + 1  # one leading separator, one per song
    first_doc = tok.decode([int(t) for t in streams.train[1 : list(streams.train[1:]).index(eot) + 1]])
    assert first_doc.startswith("Song, No.") and "\n\nverse" in first_doc
    again = build_streams(songs, tok, eot, tmp_path, val_fraction=0.2)
    assert again.from_cache and not streams.from_cache and (again.train == streams.train).all()


def test_train_resume_export_generate(lyrics_csv, tmp_path):
    first = Trainer(config(lyrics_csv, tmp_path, steps=3)).train()
    assert first["step"] == 3
    run = tmp_path / "t"
    assert (run / "checkpoints" / "latest.pt").exists() and (run / "samples" / "step-0000003.txt").exists()
    resumed = Trainer(config(lyrics_csv, tmp_path, steps=6))
    assert resumed.step == 3 and resumed.resumed_from is not None
    assert resumed.streams.from_cache  # the second run did not re-tokenise
    second = resumed.train()
    assert second["step"] == 6
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    train_losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    assert [int(r["step"]) for r in rows if r["train_loss"]] == [1, 2, 3, 4, 5, 6]
    assert train_losses[-1] < train_losses[0]
    assert (run / "loss.png").stat().st_size > 1000

    out = tmp_path / "exported"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    songs_a = Generator(str(out)).generate([11, 12, 13], batch_size=3)
    songs_b = Generator(str(out)).generate([13, 12, 11], batch_size=1)
    assert [s.as_dict() for s in songs_a] == [s.as_dict() for s in songs_b[::-1]]
    assert "Song 0" in (out / "README.md").read_text()


def test_fresh_checkpoint_ignores_existing_run(lyrics_csv, tmp_path):
    Trainer(config(lyrics_csv, tmp_path, steps=2)).train()
    assert Trainer(config(lyrics_csv, tmp_path, checkpoint="fresh")).step == 0


def test_eval_reports_sane_numbers(lyrics_csv, tmp_path, capsys):
    Trainer(config(lyrics_csv, tmp_path, steps=30, sample_every=0, save_every=0, eval_every=0)).train()
    out = tmp_path / "model"
    main(["export", str(tmp_path / "t"), "--out", str(out)])
    capsys.readouterr()
    assert main(["eval", str(lyrics_csv), "--title-column", "song", "--model", str(out), "--count", "24",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    results = json.loads(capsys.readouterr().out)
    assert 1 < results["validation_perplexity"] < 512
    assert results["dataset"] == {"songs": 80, "lines_per_song": 4.0, "words_per_line": 5.5,
                                  "degenerate_share": 0.0, "distinct_2": results["dataset"]["distinct_2"]}
    generated = results["generated"]
    assert 0 <= generated["degenerate_share"] <= 1 and 0 <= generated["ended_on_own_share"] <= 1
    assert 0 <= generated["copied_12_word_run_share"] <= 1


def test_malformed_csv_fails_train_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('song,text\nok,"a\nb"\nx,"bad "quote""\n', encoding="utf-8")
    assert main(["train", str(bad), "--run", "r", "--runs-dir", str(tmp_path), "--base", "fresh:tiny"]) == 1
    assert "bad.csv:4: malformed CSV" in capsys.readouterr().err


def test_copied_runs_counts_verbatim_runs_and_can_ignore_vocables():
    from billionsongs.training.evaluate import copied_runs

    training = ["one two three four five six seven eight nine ten eleven twelve thirteen", "oh " * 20]
    generated = ["zero one two three four five six seven eight nine ten eleven twelve", "oh " * 14, "fresh words"]
    assert copied_runs(generated, training) == round(2 / 3, 4)
    assert copied_runs(generated, training, min_distinct=3) == round(1 / 3, 4)
    assert copied_runs(["one two three four five six seven eight nine ten eleven"], training) == 0.0
