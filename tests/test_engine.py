"""The deterministic engine: same ID, same song, whatever the batch, process or thread count."""

import json
import subprocess
import sys

import pytest
import torch

from billionsongs.ids import MAX_SONG_ID, InvalidSongId, parse_song_id
from billionsongs.model import fused_attention
from billionsongs.model.generate import TOO_LONG, Generator
from billionsongs.model.gpt import GPT2
from billionsongs.model.loading import load_model
from billionsongs.model.precision import resolve_precision
from billionsongs.model.rng import uniforms


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16, "int8"], ids=["fp32", "bf16", "int8"])
def generator(tiny_model_dir, request):
    """Every determinism test runs in every precision: each is a supported way to run the engine."""
    return Generator(str(tiny_model_dir), dtype=request.param)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "billionsongs", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_forward_matches_transformers(tiny_model_dir):
    """Our KV-cache forward computes what the reference GPT-2 implementation computes."""
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    loaded = load_model(str(tiny_model_dir))
    gpt = GPT2(loaded.config, loaded.state_dict)
    tokens = torch.tensor([[loaded.eot_id, 5, 17, 42, 99, 7], [loaded.eot_id, 8, 8, 8, 1, 2]])
    with torch.no_grad():
        expected = reference(tokens).logits
    cache = gpt.new_cache(2)
    steps = [gpt.step(tokens[:, t], torch.tensor([t, t]), cache) for t in range(tokens.shape[1])]
    got = torch.stack(steps, dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_same_id_alone_equals_inside_any_batch(generator):
    ids = list(range(64))
    alone = {i: generator.generate([i], batch_size=1)[0].as_dict() for i in ids}
    others = [10**12 + k for k in range(40)]
    for batch_size in (8, 32):
        mixed = others[:batch_size // 2] + ids[::-1] + others[batch_size // 2:]
        songs = {s.id: s.as_dict() for s in generator.generate(mixed, batch_size=batch_size)}
        assert all(songs[i] == alone[i] for i in ids), f"batch {batch_size} changed a song"


@pytest.mark.parametrize("attention", ["fused", "compiled", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, "int8"], ids=["fp32", "bf16", "int8"])
def test_rows_ignore_their_batch_at_gpt2_width(gpt2_width_model_dir, dtype, attention, monkeypatch):
    """The tiny fixture's 32-wide layers never reach the GEMM kernels GPT-2's 768/3072 layers do."""
    if attention == "fused" and (reason := fused_attention.unavailable(resolve_precision(dtype).dtype, 64)):
        pytest.skip(f"the fused kernel cannot run here: {reason}")
    monkeypatch.setenv("BILLIONSONGS_ATTENTION", attention)
    generator = Generator(str(gpt2_width_model_dir), dtype=dtype, max_tokens=80)
    assert generator.gpt.attention_name == attention
    captured: dict[int, list[int]] = {}

    def record(song_id: int, token: int) -> None:
        captured.setdefault(song_id, []).append(token)

    ids = list(range(8))
    for song_id in ids:
        generator.generate([song_id], batch_size=1, on_token=record)
    alone, captured = captured, {}
    generator.generate([10**9 + k for k in range(6)] + ids + [10**9 + k for k in range(6, 12)], batch_size=16,
                       on_token=record)
    assert {i: captured[i] for i in ids} == alone


def test_running_batch_takes_ids_as_rows_free_and_hands_each_song_back_as_it_ends(generator):
    """`run` as a service uses it: IDs arrive while the batch runs (here at steps 0, 3 and 7, more than
    fit), each takes the next free row, and each song comes back the step it ends, unchanged by when
    it joined."""
    alone = {i: generator.generate([i], batch_size=1)[0] for i in range(10)}
    arrivals, arrived, taken_at, ended_at, songs = {0: [0, 1, 2], 3: [3], 7: [4, 5, 6, 7, 8, 9]}, [], {}, {}, {}
    base = generator.stats.steps

    def take(free):
        step = generator.stats.steps - base
        for due in [k for k in arrivals if k <= step]:
            arrived.extend(arrivals.pop(due))
        handed, arrived[:] = arrived[:free], arrived[free:]
        taken_at.update({i: step for i in handed})
        assert len(taken_at) - len(ended_at) <= 4, "never more songs in flight than rows"
        return handed

    def on_song(song):
        ended_at[song.id] = generator.stats.steps - base
        songs[song.id] = song

    assert generator.run(take, batch_size=4, on_song=on_song) == 10
    assert {i: s.as_dict() for i, s in songs.items()} == {i: s.as_dict() for i, s in alone.items()}
    assert taken_at[3] == 3, "a row was free: the late ID started at once"
    for i, song in songs.items():
        assert ended_at[i] == taken_at[i] + song.tokens + (song.error != TOO_LONG), f"song {i} came back late"


def test_cache_shrinks_once_its_longest_song_ended_and_keeps_what_rows_hold(generator):
    cache = generator.gpt.new_cache(2, generator.max_length)
    cache.reserve(60)
    with torch.inference_mode():
        for keys, values in zip(cache.keys, cache.values, strict=True):
            keys.copy_(torch.randn(keys.shape))
            values.copy_(torch.randn(values.shape))
        held = [(k[:, :, :20].clone(), v[..., :20].clone()) for k, v in zip(cache.keys, cache.values, strict=True)]
    cache.shrink(40)
    assert cache.length == 64, "a song of 40 positions still needs them all"
    cache.shrink(20)
    assert cache.length == 32
    for (keys, values), (k, v) in zip(zip(cache.keys, cache.values, strict=True), held, strict=True):
        assert torch.equal(keys[:, :, :20], k) and torch.equal(values[..., :20], v)
        assert keys.is_contiguous() and values.is_contiguous()  # attention sums over contiguous memory


def test_thread_count_and_prior_calls_do_not_matter(generator):
    previous = torch.get_num_threads()
    first = generator.generate([3, 99, 12345], batch_size=3)
    generator.generate(list(range(500, 520)), batch_size=7)
    try:
        torch.set_num_threads(1)
        again = generator.generate([12345, 3, 99], batch_size=2)
    finally:
        torch.set_num_threads(previous)
    assert {s.id: s.as_dict() for s in first} == {s.id: s.as_dict() for s in again}


def test_reused_cache_memory_never_reaches_a_song(generator):
    """Each batch writes in the memory the last one released; whatever that memory holds (here NaN, as
    fresh memory may) must never be read: the songs equal those of a first batch."""
    expected = generator.generate([3, 99, 12345], batch_size=3)
    cache = generator.gpt.new_cache(8, generator.max_length)
    cache.reserve(generator.max_length)
    with torch.inference_mode():
        for buffer in cache.buffers:
            buffer.fill_(float("nan"))
    poisoned = {buffer.data_ptr() for buffer in cache.buffers}
    generator.gpt.release(cache)
    again = generator.generate([3, 99, 12345], batch_size=3)
    assert [s.as_dict() for s in again] == [s.as_dict() for s in expected]
    assert {buffer.data_ptr() for buffer in generator.gpt.new_cache(3).buffers} == poisoned  # it did reuse


def test_same_id_in_three_processes(tiny_model_dir):
    outputs = {run_cli("generate", "--song", "2024", "--song", "7", "--model", str(tiny_model_dir), "--json").stdout
               for _ in range(3)}
    assert len(outputs) == 1
    lines = outputs.pop().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [2024, 7]


def test_thousand_ids_give_thousand_songs(generator):
    captured: dict[int, list[int]] = {}
    generator.generate(range(1000), batch_size=64,
                       on_token=lambda song_id, token: captured.setdefault(song_id, []).append(token))
    # A random tiny model sometimes ends a song after a token or two; such stubs may coincide by chance.
    long_enough = [tuple(tokens) for tokens in captured.values() if len(tokens) >= 8]
    assert len(long_enough) >= 900
    assert len(set(long_enough)) == len(long_enough)


@pytest.mark.parametrize("song_id", [0, 1, 2**32 - 1, 2**32, MAX_SONG_ID])
def test_edge_ids_work(generator, song_id):
    alone = generator.generate([song_id])[0]
    in_batch = generator.generate([5, song_id, 6], batch_size=3)[1]
    assert alone.id == song_id and alone.as_dict() == in_batch.as_dict()
    assert alone.error in (None, TOO_LONG, "empty")


def test_uniforms_are_distinct_per_id_and_step():
    a = uniforms([0, 1, MAX_SONG_ID], step=0)
    b = uniforms([0, 1, MAX_SONG_ID], step=1)
    assert len(set(a) | set(b)) == 6 and ((a >= 0) & (a < 1)).all()


@pytest.mark.parametrize("bad", ["-1", str(2**63), "abc", "1.5", "", "1e3", " 7", "007", -1, 2**63, 1.5, True])
def test_invalid_ids_are_rejected(bad):
    with pytest.raises(InvalidSongId):
        parse_song_id(bad)


@pytest.mark.parametrize("bad", ["-1", str(2**63), "abc", "1.5"])
def test_cli_rejects_invalid_ids_with_exit_2(tiny_model_dir, bad):
    result = run_cli("generate", f"--song={bad}", "--model", str(tiny_model_dir))
    assert result.returncode == 2
    assert "invalid song ID" in result.stderr


def test_song_that_never_ends_is_recorded_too_long(tiny_model_dir):
    generator = Generator(str(tiny_model_dir), max_tokens=3)
    songs = generator.generate(range(20))
    assert {s.error for s in songs} == {TOO_LONG}
    assert all(s.tokens == 3 and s.title == "" for s in songs)


def test_full_context_songs_end_or_are_too_long(generator):
    songs = generator.generate(range(200), batch_size=50)
    assert {s.error for s in songs} <= {None, TOO_LONG, "empty"}
    assert all(s.tokens <= generator.loaded.config.n_positions - 1 for s in songs)
    finished = [s for s in songs if s.error is None]
    assert finished and all(s.title and s.lyrics for s in finished)
    assert any(s.error == TOO_LONG for s in songs)


def test_json_output_fields(tiny_model_dir):
    result = run_cli("generate", "--song", "5", "--model", str(tiny_model_dir), "--json")
    record = json.loads(result.stdout)
    assert set(record) >= {"id", "title", "lyrics", "model", "tokens", "error"}
    assert record["id"] == 5


def test_bundled_model_is_the_default_and_writes_lyrics(monkeypatch):
    monkeypatch.delenv("BILLIONSONGS_MODEL", raising=False)
    generator = Generator()
    assert generator.model_name == "bundled"
    songs = generator.generate([0, 1, 2, 3], batch_size=4)
    written = [s for s in songs if s.error is None]
    assert len(written) >= 3
    assert all(s.title and len(s.lyrics.splitlines()) >= 4 for s in written)
