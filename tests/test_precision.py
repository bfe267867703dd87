"""Which precision the engine uses by default, and how it is chosen."""

import pytest
import torch

from billionsongs.model.generate import Generator
from billionsongs.model.precision import native_bf16, resolve_dtype


def test_auto_is_bf16_exactly_where_the_hardware_has_it(monkeypatch):
    monkeypatch.delenv("BILLIONSONGS_DTYPE", raising=False)
    expected = torch.bfloat16 if native_bf16() else torch.float32
    assert resolve_dtype() == resolve_dtype("auto") == expected


def test_environment_and_names_pick_the_dtype(monkeypatch):
    monkeypatch.setenv("BILLIONSONGS_DTYPE", "bfloat16")
    assert resolve_dtype() == torch.bfloat16
    assert resolve_dtype("float32") == torch.float32  # an explicit choice beats the environment
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("float16")


def test_generator_follows_the_environment(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("BILLIONSONGS_DTYPE", "bfloat16")
    assert Generator(str(tiny_model_dir)).gpt.dtype == torch.bfloat16
    assert Generator(str(tiny_model_dir), dtype="float32").gpt.dtype == torch.float32
