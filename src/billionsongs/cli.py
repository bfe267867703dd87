"""The `billionsongs` command: one subcommand per job (generate, train, export, eval, serve, worker)."""

import argparse
import json
import sys

from billionsongs.ids import InvalidSongId, parse_song_id


def _song_id(text: str) -> int:
    try:
        return parse_song_id(text)
    except InvalidSongId as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write songs for IDs", description=(
        "Write the song for each ID. The same ID always gives the same song with the same model and "
        "settings, alone or in any batch."))
    p.add_argument("--song", type=_song_id, action="append", required=True, metavar="ID",
                   help="song ID, an integer 0 … 2^63-1; repeat for several songs")
    p.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                   help="Hugging Face GPT-2-format model folder, or hub name when online "
                        "(default: $BILLIONSONGS_MODEL, else the bundled lyrics model)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="songs advanced together in one forward pass per step (default 16)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per song per line (id, title, lyrics, model, tokens, error)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0; 0 = greedy)")
    p.add_argument("--top-k", type=int, default=40, help="sample from the k likeliest tokens (default 40; 0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus cut-off in (0, 1] (default 1.0 = off)")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="stop a song after N tokens and record it as 'too long' (default: the model's context)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute precision (default float32); songs differ between precisions")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import torch

    from billionsongs.model.generate import Generator
    from billionsongs.model.loading import ModelLoadError
    from billionsongs.model.sampling import SamplingSettings

    if args.batch_size < 1:
        print("billionsongs generate: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = SamplingSettings(args.temperature, args.top_k, args.top_p)
        generator = Generator(args.model, dtype=getattr(torch, args.dtype), settings=settings,
                              max_tokens=args.max_tokens)
    except (ModelLoadError, ValueError) as exc:
        print(f"billionsongs generate: error: {exc}", file=sys.stderr)
        return 1
    songs = generator.generate(args.song, batch_size=args.batch_size)
    for song in songs:
        if args.json:
            print(json.dumps(song.as_dict(), ensure_ascii=False))
        elif song.error:
            print(f"# Song {song.id}: no song ({song.error})\n")
        else:
            print(f"# {song.title}\n(song {song.id}, {song.model})\n\n{song.lyrics}\n")
    return 0


def _add_karaoke(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("karaoke", help="write a song's karaoke MIDI file", description=(
        "Write the song for ID, then its music (a melody fitted to the lyrics' syllables, chords, drums) as a "
        "karaoke MIDI file with one lyric event per syllable (.kar conventions). The same ID and model always "
        "give a byte-identical file."))
    p.add_argument("--song", type=_song_id, required=True, metavar="ID", help="song ID, an integer 0 … 2^63-1")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="file to write, usually NAME.mid or NAME.kar (same bytes); '-' writes to stdout")
    p.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                   help="Hugging Face GPT-2-format model folder, or hub name when online "
                        "(default: $BILLIONSONGS_MODEL, else the bundled lyrics model)")
    p.set_defaults(func=_run_karaoke)


def _run_karaoke(args: argparse.Namespace) -> int:
    from pathlib import Path

    from billionsongs.model.generate import Generator
    from billionsongs.model.loading import ModelLoadError
    from billionsongs.music import karaoke_bytes

    try:
        song = Generator(args.model).generate([args.song])[0]
    except (ModelLoadError, ValueError) as exc:
        print(f"billionsongs karaoke: error: {exc}", file=sys.stderr)
        return 1
    if song.error:
        print(f"billionsongs karaoke: error: song {song.id} has no lyrics ({song.error})", file=sys.stderr)
        return 1
    data = karaoke_bytes(song.id, song.title, song.lyrics)
    if args.out == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(args.out).write_bytes(data)
        print(f"wrote {args.out} ({len(data)} bytes): {song.title}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billionsongs", description="Billion Songs: a song for every number.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_karaoke(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
