"""Named GPT-2 shapes for training from scratch (`--base fresh:NAME`)."""

from transformers import GPT2Config

PRESETS: dict[str, dict] = {
    # Seconds to train; used by tests and smoke runs.
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, n_positions=128, vocab_size=512),
    # The bundled model: small enough to train on a 2-core CPU in hours and to write 300+ songs a minute.
    "small": dict(n_layer=4, n_head=4, n_embd=256, n_positions=512, vocab_size=4096),
    # GPT-2 124M's shape and vocabulary size.
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
}


def preset_config(name: str, vocab_size: int, eot_id: int) -> GPT2Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    shape = {**PRESETS[name], "vocab_size": vocab_size}
    return GPT2Config(**shape, bos_token_id=eot_id, eos_token_id=eot_id, resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0)
