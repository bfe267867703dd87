"""Shared fixtures: a tiny randomly initialised GPT-2 with its own tokenizer, built offline in seconds."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Tests that expect particular songs from the tiny model (one ID ends, another runs too long) must get
# them on any CPU, so the default precision is pinned; engine tests run both dtypes explicitly, and
# test_precision.py checks what "auto" picks. Worker subprocesses inherit this.
os.environ["BILLIONSONGS_DTYPE"] = "float32"

FIXTURE_TEXT = """Walking Home

I was walking home in the rain tonight
Every light in the city burning bright
Oh oh, take me home
Oh oh, take me home

You said forever, I said maybe so
We were dancing slow on the radio
Oh oh, take me home
"""


def build_tiny_model(folder: Path, *, n_positions: int = 64, seed: int = 0, n_embd: int = 32, n_head: int = 2) -> Path:
    """A GPT-2-format folder (config.json, model.safetensors, tokenizer.json) with random weights.

    `n_embd=768, n_head=12` gives GPT-2's layer width, where BLAS picks the kernels the real model meets.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator([FIXTURE_TEXT] * 4, vocab_size=300, min_frequency=1,
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer.save(str(folder / "tokenizer.json"))
    eot = tokenizer.token_to_id("<|endoftext|>")
    config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=n_positions, n_embd=n_embd, n_layer=2,
                        n_head=n_head, bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def gpt2_width_model_dir(tmp_path_factory) -> Path:
    """Two layers of GPT-2's width (768, 12 heads): the BLAS kernels the real model meets."""
    return build_tiny_model(tmp_path_factory.mktemp("wide-model"), n_positions=128, n_embd=768, n_head=12)


@pytest.fixture(scope="session")
def on_ci() -> bool:
    """Fixtures, not `from conftest import`: with several conftest.py files that name is ambiguous."""
    return ON_CI


@pytest.fixture
def songdata_csv() -> Path:
    return shared_file("lyrics", "songdata.csv")


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data; skipped outside CI when absent, a failure on CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if ON_CI:
            pytest.fail(f"shared data missing on CI: {path}")
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture
def mutated_kernel(monkeypatch, tmp_path):
    """Swap a hand-written kernel's C++ source (`module.SOURCE`) for a copy with `old` replaced by `new`,
    so that the module's next start-up check builds and checks the mutant; the real kernel is back after
    the test. For the tests that show a kernel rounding or summing differently is refused."""

    def mutate(module, old: str, new: str) -> None:
        source = module.SOURCE.read_text()
        assert old in source
        mutated = tmp_path / module.SOURCE.name
        mutated.write_text(source.replace(old, new))
        monkeypatch.setattr(module, "SOURCE", mutated)
        monkeypatch.setattr(module, "_tried", False)
        monkeypatch.setattr(module, "_kernel", module._kernel)  # restored after the test

    return mutate
