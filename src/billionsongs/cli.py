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
    p.add_argument("--max-chant-words", type=int, default=8, metavar="N",
                   help="chant guard: at most N words in a row made of one or two words ('oh oh oh ...'); "
                        "past that those words are masked (default 8; 0 = off)")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="stop a song after N tokens and record it as 'too long' (default: the model's context)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "int8"), default=None,
                   help="compute precision (default $BILLIONSONGS_DTYPE, else auto: bfloat16 where the CPU or "
                        "GPU has native bf16, float32 elsewhere; int8: linear layers in int8, the rest as auto, "
                        "faster on a CPU at some cost in quality); songs differ between precisions")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (default $BILLIONSONGS_DEVICE, else auto: the first CUDA GPU "
                        "torch sees, else the CPU); songs differ between devices")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:

    from billionsongs.model.generate import Generator
    from billionsongs.model.loading import ModelLoadError
    from billionsongs.model.sampling import SamplingSettings

    if args.batch_size < 1:
        print("billionsongs generate: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = SamplingSettings(args.temperature, args.top_k, args.top_p, args.max_chant_words)
        generator = Generator(args.model, dtype=args.dtype, settings=settings,
                              max_tokens=args.max_tokens, device=args.device)
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


def _add_train(sub: argparse._SubParsersAction) -> None:
    from billionsongs.training.config import TrainConfig

    d = TrainConfig(data=[], run="")
    p = sub.add_parser("train", help="train or fine-tune a lyrics model", description=(
        "Train a GPT-2-format model on lyrics. Songs are written as title line + blank line + lyrics + "
        "end-of-text and packed into one token stream; training windows are drawn from it. A run folder "
        "holds checkpoints, samples, metrics.csv and loss.png; Ctrl-C saves a checkpoint."))
    p.add_argument("data", nargs="+", help="CSV, JSONL or text files, or folders of text files")
    p.add_argument("--run", required=True, help="run name; its folder is RUNS_DIR/RUN")
    p.add_argument("--runs-dir", default=d.runs_dir, help=f"where run folders live (default {d.runs_dir})")
    p.add_argument("--column", default=d.column, help="lyrics column (CSV) or field (JSONL) (default text)")
    p.add_argument("--title-column", default=None, help="title column or field (default: none)")
    p.add_argument("--include", default=d.include, help="file pattern inside folders (default *.txt)")
    p.add_argument("--base", default=d.base, help="fresh:tiny|small|gpt2-124m to train from scratch with a new "
                   "tokenizer, or a model folder / hub name to fine-tune (default fresh:small)")
    p.add_argument("--checkpoint", default=d.checkpoint, help="latest (resume if the run has one), fresh "
                   "(ignore checkpoints), or a checkpoint file (default latest)")
    p.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps of the run (default 1000)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop (and save) after this many seconds of this invocation")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per micro-batch (default 16)")
    p.add_argument("--accumulate", type=int, default=d.accumulate, help="micro-batches per step (default 1)")
    p.add_argument("--block-size", type=int, default=None, help="window length (default: model context)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default 1e-3)")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (default 100)")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="write sample songs every N steps")
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint every N steps")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="validation loss every N steps")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of songs held out (default 0.05)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for initial weights and window order")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast where the CPU/GPU supports it natively, else fp32")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 …")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from billionsongs.training.readers import DataError
    from billionsongs.training.trainer import TrainConfig, Trainer

    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    try:
        trainer = Trainer(TrainConfig(**fields))
    except (DataError, ValueError) as exc:
        print(f"billionsongs train: error: {exc}", file=sys.stderr)
        return 1
    if trainer.resumed_from:
        print(f"resuming from {trainer.resumed_from} at step {trainer.step}", file=sys.stderr)
    result = trainer.train()
    print(json.dumps(result))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a training run as a Hugging Face model folder",
                       description="Write RUN's latest checkpoint as a GPT-2-format folder (config.json, "
                       "model.safetensors, tokenizer.json, README.md model card) that --model accepts.")
    p.add_argument("run", metavar="RUN", help="run name (under --runs-dir) or path to a run folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--runs-dir", default="runs", help="where run folders live (default runs)")
    p.add_argument("--eval", default=None, metavar="JSON", help="`billionsongs eval --out` results for the card")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from billionsongs.training.export import export_run

    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.runs_dir) / args.run
    results = json.loads(Path(args.eval).read_text()) if args.eval else None
    try:
        out = export_run(run_dir, Path(args.out), results)
    except FileNotFoundError as exc:
        print(f"billionsongs export: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="perplexity and lyric statistics of a model", description=(
        "Validation perplexity on DATA's held-out songs, and statistics of --count generated songs next to "
        "the same statistics of DATA: lines per song, words per line, degenerate share, distinct-2, share "
        "that end on their own, and share containing a 12-word run copied verbatim from DATA."))
    p.add_argument("data", nargs="+", help="the dataset (CSV, JSONL, text files or folders)")
    p.add_argument("--model", default=None, help="model folder or hub name (default: the bundled model)")
    p.add_argument("--column", default="text", help="lyrics column or field (default text)")
    p.add_argument("--title-column", default=None, help="title column or field")
    p.add_argument("--include", default="*.txt", help="file pattern inside folders (default *.txt)")
    p.add_argument("--count", type=int, default=200, help="songs to generate, IDs 0..COUNT-1 (default 200)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="held-out share used in training (default 0.05)")
    p.add_argument("--cache-dir", default="runs/.token-cache", help="token cache folder")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the results to this file")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from billionsongs.model.loading import ModelLoadError, default_model
    from billionsongs.training.evaluate import evaluate
    from billionsongs.training.readers import DataError, read_songs

    try:
        songs = list(read_songs(args.data, args.column, args.title_column, args.include))
        results = evaluate(args.model or default_model(), songs, Path(args.cache_dir), args.count, args.val_fraction)
    except (DataError, ModelLoadError) as exc:
        print(f"billionsongs eval: error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
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


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the website (production server)", description=(
        "Apply database migrations, start a generation worker process, and serve the site with granian "
        "(WSGI). Data lives in $BILLIONSONGS_HOME (SQLite) unless DATABASE_URL names a PostgreSQL database."))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="web server processes (default: one per CPU core; Python runs one request at a time "
                        "per process, so this is what scales requests/s)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="request threads per process (default 2 per CPU core, at most 16)")
    p.add_argument("--no-worker", action="store_true",
                   help="do not start a generation worker (run `billionsongs worker` elsewhere)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="songs the worker writes per batch (default $BILLIONSONGS_BATCH_SIZE or 16)")
    p.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                   help="model for the worker (default: $BILLIONSONGS_MODEL, else the bundled lyrics model)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from billionsongs.web.server import serve

    return serve(args.host, args.port, processes=args.processes, threads=args.threads,
                 run_worker=not args.no_worker, batch_size=args.batch_size, model=args.model)


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="write queued songs for the website", description=(
        "Take songs the website queued (pending rows in its database) and write them in batches. "
        "Several workers, on any machines, may share one database: each claims its rows atomically and "
        "renews a lease while writing. With BILLIONSONGS_QUEUE=rq (and REDIS_URL, DATABASE_URL) the worker "
        "takes RQ jobs from Redis; otherwise it polls the database. Idle workers refill the pool."))
    p.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                   help="model folder or hub name (default: $BILLIONSONGS_MODEL, else the bundled lyrics model)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="songs per batch (default $BILLIONSONGS_BATCH_SIZE or 16)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="wait between looks at an empty queue (default $BILLIONSONGS_POLL_SECONDS or 0.5)")
    p.add_argument("--until-empty", action="store_true", help="exit once the queue is empty")
    p.add_argument("--reset-all", action="store_true",
                   help="on start, re-queue every song left 'generating' (only when this is the sole worker)")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from billionsongs.web import setup_django

    setup_django()
    from billionsongs.web.songs.worker import Worker

    worker = Worker(args.model, batch_size=args.batch_size, poll_seconds=args.poll,
                    reset_all_on_start=args.reset_all, parent_pid=args.parent_pid)
    return worker.run(until_empty=args.until_empty)


def _add_quality_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quality-report", help="how many songs the pool's quality gate rejects", description=(
        "Write songs for a range of IDs with a model and report how many the quality gate (which decides "
        "what enters the pregenerated pool) rejects, and why. With --stored, report on the website's "
        "stored songs instead."))
    p.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                   help="model folder or hub name (default: $BILLIONSONGS_MODEL, else the bundled lyrics model)")
    p.add_argument("--count", type=int, default=200, help="songs to write (default 200)")
    p.add_argument("--first", type=int, default=0, help="first song ID (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="songs per batch (default 16)")
    p.add_argument("--stored", action="store_true", help="check the website's stored songs, write nothing")
    p.set_defaults(func=_run_quality_report)


def _run_quality_report(args: argparse.Namespace) -> int:
    from collections import Counter

    from billionsongs.web import setup_django

    setup_django()
    from billionsongs.web.songs import quality

    rules = quality.Rules.from_settings()
    engine_errors: Counter = Counter()
    if args.stored:
        from billionsongs.web.songs.models import Song, Status

        rows = Song.objects.filter(status=Status.DONE).values_list("title", "lyrics")
        verdicts = [quality.check(title, lyrics, rules) for title, lyrics in rows.iterator()]
        engine_errors.update(Song.objects.filter(status=Status.FAILED).values_list("error", flat=True))
        source = "stored songs"
    else:
        import os

        from billionsongs.model.generate import Generator

        generator = Generator(args.model or os.environ.get("BILLIONSONGS_MODEL") or None)
        songs = generator.generate(range(args.first, args.first + args.count), batch_size=args.batch_size)
        verdicts = [quality.check(s.title, s.lyrics, rules) for s in songs if not s.error]
        engine_errors.update(s.error for s in songs if s.error)
        source = f"model {generator.model_name}, IDs {args.first}..{args.first + args.count - 1}"
    print(f"quality gate on {source}")
    if engine_errors:
        print(f"no song at all (engine): {sum(engine_errors.values())} "
              + ", ".join(f"{error}: {count}" for error, count in engine_errors.most_common()))
    print(quality.report(verdicts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billionsongs", description="Billion Songs: a song for every number.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_train(sub)
    _add_export(sub)
    _add_eval(sub)
    _add_karaoke(sub)
    _add_serve(sub)
    _add_worker(sub)
    _add_quality_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
