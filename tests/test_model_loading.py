"""Model loading errors name the file or the remedy."""

import os
import shutil
import subprocess
import sys

import pytest

from billionsongs.model.loading import ModelLoadError, load_model


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_named(model_copy, name):
    (model_copy / name).unlink()
    with pytest.raises(ModelLoadError, match=rf"missing model file: .*{name}"):
        load_model(str(model_copy))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_corrupt_file_is_named(model_copy, name):
    data = (model_copy / name).read_bytes()
    (model_copy / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=rf"corrupt .*{name if name != 'tokenizer.json' else 'tokenizer'}"):
        load_model(str(model_copy))


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_model(str(tmp_path / "nope"))


@pytest.mark.parametrize("offline_env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_hub_name_without_network_gives_one_line_error(tmp_path, offline_env):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **offline_env}
    result = subprocess.run([sys.executable, "-m", "billionsongs", "generate", "--song", "1", "--model",
                             "openai-community/gpt2"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--model /path/to/folder" in lines[0], result.stderr
