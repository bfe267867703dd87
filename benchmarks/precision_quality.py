"""What each precision costs in quality: validation loss of a model, teacher-forced through our engine.

Why: bf16 and int8 are faster (benchmarks/generation.py), but they round; the price is how much worse the
model predicts held-out lyrics. The songs are the validation split the trainer uses (the same hash of the
lyrics), read from ../shared/data/lyrics/songdata.csv, so the model never trained on them. Every song is
cut to --tokens tokens, fed one token per step through `GPT2.step` exactly as generation feeds it, and the
cross-entropy of each next token is averaged.

    .venv/bin/python benchmarks/precision_quality.py              # bundled model, appends to RESULTS.md
    .venv/bin/python benchmarks/precision_quality.py --no-append --songs 16 --tokens 64
"""

import argparse
import datetime as dt
import math
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from billionsongs.model.gpt import GPT2
from billionsongs.model.loading import BUNDLED_MODEL_DIR, load_model
from billionsongs.model.precision import resolve_precision
from billionsongs.training.dataset import document, is_validation
from billionsongs.training.readers import read_csv

HERE = Path(__file__).resolve().parent
SONGDATA = HERE.parents[1] / "shared" / "data" / "lyrics" / "songdata.csv"


def validation_tokens(loaded, csv: Path, songs: int, tokens: int) -> torch.Tensor:
    """(songs, tokens + 1) token ids: end-of-text, then the first `tokens` of each long-enough validation song."""
    rows = []
    for song in read_csv(csv, "text", "song"):
        if is_validation(song, 0.05):
            ids = [loaded.eot_id, *loaded.tokenizer.encode(document(song)).ids[:tokens]]
            if len(ids) == tokens + 1:
                rows.append(ids)
                if len(rows) == songs:
                    break
    if not rows:
        raise SystemExit(f"no validation song of {tokens} tokens in {csv}")
    return torch.tensor(rows)


@torch.inference_mode()
def mean_loss(loaded, precision_name: str, ids: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats) with the engine's forward in this precision."""
    precision = resolve_precision(precision_name)
    gpt = GPT2(loaded.config, loaded.state_dict, dtype=precision.dtype, int8=precision.int8)
    rows, steps = ids.shape[0], ids.shape[1] - 1
    cache = gpt.new_cache(rows)
    total = 0.0
    for t in range(steps):
        logits = gpt.step(ids[:, t], torch.full((rows,), t), cache).float()
        total += F.cross_entropy(logits, ids[:, t + 1], reduction="sum").item()
    return total / (rows * steps)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(BUNDLED_MODEL_DIR), help="GPT-2-format folder (default: the bundled model)")
    p.add_argument("--csv", type=Path, default=SONGDATA, help=f"lyrics CSV with song,text columns (default {SONGDATA})")
    p.add_argument("--songs", type=int, default=96, help="validation songs to score (default 96)")
    p.add_argument("--tokens", type=int, default=256, help="tokens scored per song (default 256)")
    p.add_argument("--precisions", default="float32,bfloat16,int8", help="comma-separated (default all three)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file the report is appended to")
    p.add_argument("--no-append", action="store_true", help="print the report only")
    args = p.parse_args(argv)
    if not args.csv.exists():
        print(f"skipped: {args.csv} is not there (see ../shared/data/README.md)", file=sys.stderr)
        return
    loaded = load_model(args.model)
    ids = validation_tokens(loaded, args.csv, args.songs, args.tokens)
    losses = {name: mean_loss(loaded, name, ids) for name in args.precisions.split(",")}
    base = next(iter(losses.values()))
    lines = [f"## Precision quality, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"- command: `{shlex.join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)])}`",
             f"- model: {loaded.name}; {ids.shape[0]} validation songs of {args.csv.name}, first {args.tokens} "
             "tokens each, teacher-forced through the engine's decode step", "",
             "| precision | loss (nats/token) | perplexity | vs first |", "|---|---|---|---|"]
    lines += [f"| {name} | {loss:.4f} | {math.exp(loss):.2f} | {100 * (math.exp(loss - base) - 1):+.2f}% |"
              for name, loss in losses.items()]
    report = "\n".join(lines)
    print(report)
    if not args.no_append:
        with args.results.open("a", encoding="utf-8") as f:
            f.write("\n" + report + "\n")


if __name__ == "__main__":
    main()
