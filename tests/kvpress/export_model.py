"""Export smollm2-135m and a fixed prompt for the kvpress parity run (main venv).

kvpress 0.5.5 pins transformers < 5.3, too old for flipbench's GGUF loader, so its venv
cannot convert the model itself. This script saves flipbench's converted float32 weights
as a plain transformers directory, and the prompt as token ids, so that both sides see
the same model and the same tokens; the weights' hash lets each side check it.

    .venv/bin/python tests/kvpress/export_model.py build/kvpress
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

MODEL = "smollm2-135m"
# 256 tokens of the King James Bible (the long real text harness.experiments.fidelity reads),
# the same tokens on every run: the parity comparison is on fixed ids.
N_TOKENS = 256
SOURCE, SEED = "kjv", 0


def weights_sha256(model) -> str:
    """sha256 of every state-dict tensor (float32 bytes, in key order): the same weights on both sides."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def export(out: Path) -> None:
    """Write out/model (save_pretrained) and out/prompt.json (ids, source, weights hash)."""
    from harness.experiments.fidelity import text_ids
    from harness.models import load_model

    model, tokenizer = load_model(MODEL, device="cpu")
    ids = text_ids(SOURCE, tokenizer, N_TOKENS, seed=SEED)[0].tolist()
    model.save_pretrained(out / "model")
    prompt = {"model": MODEL, "source": SOURCE, "seed": SEED, "input_ids": ids,
              "weights_sha256": weights_sha256(model)}
    (out / "prompt.json").write_text(json.dumps(prompt) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for model/ and prompt.json")
    export(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
