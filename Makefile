# confseg: `make demo` and `make test` are all a fresh clone needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= demo/synthetic
DEMO_STUDY ?= demo/study
DEMO_VIDEOS ?= demo/videos
DEMO_DOWNSTREAM ?= demo/downstream

.PHONY: demo demo-downstream test lint install clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned so pip takes the local CPU wheel (a looser spec pulls a multi-GB CUDA build).
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev,medical,annotator,onnx,openvino,ray]" "torch==2.13.0"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m confseg.demo --data $(DEMO_DATA) --out $(DEMO_STUDY)

# after `make demo`: the demo study's strategies judged by S/F, S/F change and readmission
demo-downstream: $(STAMP)
	$(BIN)/python -m confseg.demo_downstream --study $(DEMO_STUDY) --data $(DEMO_VIDEOS) --out $(DEMO_DOWNSTREAM)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf demo .pytest_cache
