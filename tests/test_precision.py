"""Which precision the engine uses by default, and how it is chosen."""

import pytest
import torch

from billionsongs.model import int8_rows
from billionsongs.model.generate import Generator
from billionsongs.model.precision import Precision, native_bf16, resolve_precision
from billionsongs.model.quantized import packed_int8_available


def test_auto_is_bf16_exactly_where_the_hardware_has_it(monkeypatch):
    monkeypatch.delenv("BILLIONSONGS_DTYPE", raising=False)
    expected = torch.bfloat16 if native_bf16() else torch.float32
    assert resolve_precision() == resolve_precision("auto") == Precision(expected)


def test_environment_and_names_pick_the_dtype(monkeypatch):
    monkeypatch.setenv("BILLIONSONGS_DTYPE", "bfloat16")
    assert resolve_precision() == Precision(torch.bfloat16)
    assert resolve_precision("float32") == Precision(torch.float32)  # an explicit choice beats the environment
    assert resolve_precision(torch.float32) == Precision(torch.float32)
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_precision("float16")
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_precision(torch.float16)


def test_int8_keeps_the_auto_dtype_for_everything_but_the_linear_layers(monkeypatch):
    monkeypatch.delenv("BILLIONSONGS_DTYPE", raising=False)
    int8 = resolve_precision("int8")
    assert int8 == Precision(resolve_precision("auto").dtype, int8=True) and int8.name == "int8"


def test_generator_follows_the_environment(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("BILLIONSONGS_DTYPE", "bfloat16")
    assert Generator(str(tiny_model_dir)).gpt.dtype == torch.bfloat16
    assert Generator(str(tiny_model_dir), dtype="float32").gpt.dtype == torch.float32


def test_int8_generator_quantizes_its_linear_layers(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("BILLIONSONGS_DTYPE", "int8")
    generator = Generator(str(tiny_model_dir))
    if not packed_int8_available():
        fastest = "int8-dynamic"
    else:  # our VNNI kernel for every height where it runs and AMX does not make oneDNN's faster
        fastest = "int8-vnni" if int8_rows.prepare() and int8_rows.max_rows() is None else "int8-onednn-packed"
    assert generator.precision.int8 and generator.gpt.kernel_name == fastest


def test_a_precision_this_cpu_only_emulates_is_kept_but_warned_about(monkeypatch, caplog):
    import billionsongs.model.precision as precision

    monkeypatch.setattr(precision, "native_bf16", lambda device=None: False)
    monkeypatch.setattr(precision, "vnni", lambda: False)
    with caplog.at_level("WARNING", logger=precision.__name__):
        assert resolve_precision("bfloat16") == Precision(torch.bfloat16)
        assert resolve_precision("int8") == Precision(torch.float32, int8=True)
        assert resolve_precision("float32") == resolve_precision("auto") == Precision(torch.float32)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "bf16 is emulated" in warned[0] and "auto picks float32" in warned[0]
    assert "no VNNI" in warned[1]
    assert precision.slow_reason(Precision(torch.bfloat16), torch.device("cuda")) is None  # a GPU's own problem


def test_no_warning_where_the_cpu_has_the_instructions(monkeypatch, caplog):
    import billionsongs.model.precision as precision

    monkeypatch.setattr(precision, "native_bf16", lambda device=None: True)
    monkeypatch.setattr(precision, "vnni", lambda: True)
    with caplog.at_level("WARNING", logger=precision.__name__):
        assert resolve_precision("int8") == Precision(torch.bfloat16, int8=True)
        assert resolve_precision("bfloat16") == Precision(torch.bfloat16)
    assert not caplog.records
