"""Turning a training run into a Hugging Face GPT-2 folder that `generate --model DIR` loads."""

import json
import shutil
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from billionsongs.model.generate import Generator
from billionsongs.model.loading import load_model

CARD_SAMPLE_IDS = (0, 1, 2, 3, 4)


def export_run(run_dir: Path, out: Path, eval_results: dict | None = None) -> Path:
    checkpoint = run_dir / "checkpoints" / "latest.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {checkpoint})")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = GPT2LMHeadModel(GPT2Config.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "tokenizer.json").write_text(state["tokenizer"], encoding="utf-8")
    (out / "generation_config.json").unlink(missing_ok=True)
    (out / "model.safetensors").chmod(0o644)
    if (run_dir / "loss.png").is_file():
        shutil.copyfile(run_dir / "loss.png", out / "loss.png")
    generator = Generator(load_model(str(out)))
    songs = generator.generate(CARD_SAMPLE_IDS, batch_size=len(CARD_SAMPLE_IDS))
    (out / "README.md").write_text(model_card(state, songs, eval_results, sample_heading(generator)), encoding="utf-8")
    return out


def sample_heading(generator: Generator) -> str:
    """Songs depend on the sampler and the precision, so the card says which produced its samples."""
    s = generator.settings
    precision = str(generator.gpt.dtype).removeprefix("torch.")
    return (f"## Five sample songs (IDs 0-4, default sampling: temperature {s.temperature:g}, top-k {s.top_k}, "
            f"chant guard {s.max_chant_words} words; computed in {precision})")


def model_card(state: dict, songs: list, eval_results: dict | None, samples_heading: str) -> str:
    cfg, train = state["config"], state["train_config"]
    params = sum(v.numel() for k, v in state["model"].items() if k != "lm_head.weight")
    title = f" --title-column {train['title_column']}" if train["title_column"] else ""
    command = (f"billionsongs train {' '.join(train['data'])} --run {train['run']} --base {train['base']} "
               f"--column {train['column']}{title} --steps {train['steps']} --batch-size {train['batch_size']} "
               f"--accumulate {train['accumulate']} --lr {train['lr']} --warmup {train['warmup']} "
               f"--seed {train['seed']}")
    lines = [
        "---", "library_name: transformers", "tags: [gpt2, lyrics, billionsongs]", "---", "",
        f"# Billion Songs lyrics model ({train['run']})", "",
        "A GPT-2-format model trained from scratch by the Billion Songs training pipeline. It writes a title line, "
        "a blank line, then lyrics, and ends with `<|endoftext|>`.", "",
        "## Shape", "",
        f"{cfg['n_layer']} layers, {cfg['n_head']} heads, {cfg['n_embd']} wide, context {cfg['n_positions']}, "
        f"vocabulary {cfg['vocab_size']} (byte-level BPE trained on the data); {params / 1e6:.2f}M parameters.", "",
        "## Training", "",
        f"- Command: `{command}` (resumed with `--checkpoint latest` as needed)",
        f"- Steps: {state['step']}; tokens seen: {state['tokens_seen']:,}; training and validation loss: `loss.png`",
        *[f"- Data: `{Path(name).name}` sha256 `{digest}`" for name, digest in state.get("data_sha256", {}).items()],
        "",
    ]
    if eval_results:
        lines += ["## Evaluation (`billionsongs eval`)", "", "```json", json.dumps(eval_results, indent=2), "```", ""]
    lines += [samples_heading, ""]
    for song in songs:
        body = song.lyrics if not song.error else f"({song.error})"
        lines += [f"### Song {song.id}: {song.title}", "", "```text", body, "```", ""]
    return "\n".join(lines)
