# One-command set-up and runs. The virtual environment lives in .venv.
#   make test   -- set up, lint, and run the whole test suite (what CI runs)
#   make demo   -- set up, then run the EGG demo on the embedded model organism
# torch is installed first and on its own: TORCH=torch==2.13.0 takes a CPU build where one
# is on local disk; elsewhere add TORCH_INDEX=https://download.pytorch.org/whl/cpu for a
# CPU-only wheel, or TORCH=torch for the default (CUDA) build on a GPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_OUT ?= demo_out
BIN := $(VENV)/bin

.PHONY: setup browser test lint demo bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian's Chromium and ChromeDriver for the explorer's browser test (tests/test_explorer.py):
# installed only where /usr/bin/chromium or /usr/bin/chromedriver is missing (root or sudo).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "make browser: not root and no sudo: install chromium chromium-driver by hand (the browser test is skipped until then)"; exit 0; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

test: lint browser
	$(BIN)/pytest -q

demo: setup
	$(BIN)/egg-interp demo --out $(DEMO_OUT)

bench: setup
	$(BIN)/egg-interp bench --preset llava-1.5-shaped --out figures/bench

# CUDA tests, the benchmark on LLaVA-1.5-7B's and Qwen3-VL-8B's shapes in bfloat16 (random
# weights) and training speed: <= 8 min on one H100 or H200 once installed. Needs a CUDA build
# of torch: make gpu-check TORCH=torch. Where nvidia-smi sees a GPU but the venv holds a CPU
# build (left by an earlier make setup), that build is replaced by $(TORCH) first.
# Writes figures/gpu/ (gpu_check.md and gpu_check.json).
gpu-check: setup
	@if nvidia-smi -L >/dev/null 2>&1 && \
		! $(BIN)/python -c "import sys, torch; sys.exit(torch.version.cuda is None)"; then \
		echo "make gpu-check: the venv's torch is a CPU build; installing $(TORCH) instead"; \
		$(BIN)/python -m pip uninstall -q -y torch && \
		$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(BIN)/python analyses/gpu_check.py --out figures/gpu

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
