"""Which device the engine runs on, and the clear errors for what a device cannot do."""

import pytest
import torch

from billionsongs.model.attention import choose_attention
from billionsongs.model.device import resolve_device
from billionsongs.model.generate import Generator
from billionsongs.model.gpt import GPT2
from billionsongs.model.loading import load_model


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("BILLIONSONGS_DEVICE", raising=False)


def test_auto_is_the_cpu_without_a_gpu(no_cuda):
    assert resolve_device() == resolve_device("auto") == torch.device("cpu")


def test_asking_for_cuda_without_one_says_so(no_cuda, monkeypatch):
    monkeypatch.setenv("BILLIONSONGS_DEVICE", "cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device()
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit choice beats the environment
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


def test_int8_and_cpu_attention_refuse_a_gpu(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    with pytest.raises(ValueError, match="CPU only"):
        GPT2(loaded.config, loaded.state_dict, int8=True, device=torch.device("cuda"))
    with pytest.raises(ValueError, match="for the CPU"):
        choose_attention(torch.bfloat16, 12, 64, "compiled", device=torch.device("cuda"))
    with pytest.raises(ValueError, match="for the CPU"):
        choose_attention(torch.bfloat16, 12, 64, "fused", device=torch.device("cuda"))
    assert choose_attention(torch.bfloat16, 12, 64, "auto", device=torch.device("cuda"))[0] == "eager"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_songs_on_a_gpu_ignore_their_batch(gpt2_width_model_dir, dtype):
    generator = Generator(str(gpt2_width_model_dir), dtype=dtype, max_tokens=64, device="cuda")
    ids = list(range(6))
    alone = [generator.generate([i], batch_size=1)[0].as_dict() for i in ids]
    assert [s.as_dict() for s in generator.generate([10**9, *ids, 10**9 + 1], batch_size=8)[1:-1]] == alone
