# Two commands do all set-up on a fresh machine (Python >= 3.11 and make are all they need):
#   make demo   create .venv, install numgen, run the main job on the embedded digits (offline)
#   make test   create .venv, install numgen with its test tools, run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test lint clean

$(BIN)/numgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# PyTorch first, so that pip never pulls the multi-GB CUDA build onto a machine without a GPU:
	@# a GPU machine (nvidia-smi) or a Mac takes the registry's build; any other machine takes the
	@# CPU wheel (+cpu), from a wheel pip already finds locally or else from PyTorch's CPU index.
	if command -v nvidia-smi >/dev/null 2>&1 || [ "$$(uname)" = Darwin ]; then \
		$(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	else \
		$(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" \
		|| $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/pip install -e ".[web,test]"
	touch $@

demo: $(BIN)/numgen
	$(BIN)/numgen demo --out demo_out

# The quick suite by default; CI runs everything with `make test TEST_ARGS=` (slow tests too:
# real MNIST, longer training).
TEST_ARGS ?= -m "not slow"
test: $(BIN)/numgen
	$(BIN)/pytest $(TEST_ARGS)

lint: $(BIN)/numgen
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) demo_out .pytest_cache
