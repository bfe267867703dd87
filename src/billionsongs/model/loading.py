"""Finding and reading a Hugging Face GPT-2-format model: a local folder, a hub name, or the bundled one.

Every failure names the file or the remedy, because the person reading it is usually setting up a
fresh machine and needs to know exactly which path to fix.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "bundled_model"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
EOT = "<|endoftext|>"


class ModelLoadError(RuntimeError):
    """A model could not be found or read; the message says which file and what to do."""


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float
    eos_token_id: int

    @classmethod
    def from_json(cls, data: dict) -> "GPT2Config":
        activation = data.get("activation_function", "gelu_new")
        if data.get("model_type", "gpt2") != "gpt2" or activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"not a GPT-2 config (model_type={data.get('model_type')!r}, activation={activation!r})")
        return cls(
            vocab_size=int(data["vocab_size"]),
            n_positions=int(data.get("n_positions", data.get("n_ctx", 1024))),
            n_embd=int(data["n_embd"]),
            n_layer=int(data["n_layer"]),
            n_head=int(data["n_head"]),
            layer_norm_epsilon=float(data.get("layer_norm_epsilon", 1e-5)),
            eos_token_id=int(data.get("eos_token_id", 50256)),
        )


@dataclass
class LoadedModel:
    """What the engine needs: config, weights in HF GPT-2 naming, a tokenizer, and a display name."""

    name: str
    path: Path
    config: GPT2Config
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    eot_id: int


def default_model() -> str:
    """The model used when none is named: $BILLIONSONGS_MODEL, else the bundled one."""
    return os.environ.get("BILLIONSONGS_MODEL") or str(BUNDLED_MODEL_DIR)


def resolve_model_path(name_or_path: str) -> Path:
    """A local folder is used as is; anything else is treated as a Hugging Face hub name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path == BUNDLED_MODEL_DIR:
        raise ModelLoadError(f"the bundled model is missing from {BUNDLED_MODEL_DIR}; pass --model FOLDER")
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"model folder not found: {name_or_path}")
    return _download_from_hub(name_or_path)


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "model.safetensors", *TOKENIZER_FILES]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
    except Exception as exc:  # the hub client raises many unrelated types for "offline"
        raise ModelLoadError(
            f"could not fetch model {repo_id!r} from the Hugging Face hub ({type(exc).__name__}); "
            "without network, pass --model /path/to/folder holding config.json, model.safetensors and tokenizer.json"
        ) from None


def load_model(name_or_path: str | None = None) -> LoadedModel:
    """Read config, weights and tokenizer; each missing or corrupt file is named in the error."""
    name = name_or_path or default_model()
    path = resolve_model_path(name)
    config = _read_config(path / "config.json")
    state_dict = _read_weights(path / "model.safetensors")
    tokenizer = _read_tokenizer(path)
    eot_id = tokenizer.token_to_id(EOT)
    if eot_id is None:
        eot_id = config.eos_token_id
    if path.resolve() == BUNDLED_MODEL_DIR:
        display = "bundled"
    else:
        display = name if path.parent.name == "snapshots" else path.name
    return LoadedModel(display, path, config, state_dict, tokenizer, eot_id)


def _read_config(file: Path) -> GPT2Config:
    if not file.is_file():
        raise ModelLoadError(f"missing model file: {file}")
    try:
        return GPT2Config.from_json(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"corrupt model file {file}: {exc}") from None


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise ModelLoadError(f"missing model file: {file} (only safetensors weights are loaded)")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"corrupt model file {file}: {exc}") from None
    # GPT2Model checkpoints have bare names; GPT2LMHeadModel ones prefix "transformer.".
    return {key.removeprefix("transformer."): value for key, value in tensors.items()}


def _read_tokenizer(folder: Path) -> Tokenizer:
    file = folder / "tokenizer.json"
    try:
        if file.is_file():
            return Tokenizer.from_file(str(file))
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if vocab.is_file() and merges.is_file():
            from tokenizers import ByteLevelBPETokenizer

            return ByteLevelBPETokenizer(str(vocab), str(merges))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        raise ModelLoadError(f"corrupt tokenizer file in {folder}: {exc}") from None
    raise ModelLoadError(f"missing model file: {file} (or vocab.json + merges.txt)")
