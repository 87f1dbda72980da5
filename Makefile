# Everything a fresh machine needs: `make demo` and `make test` set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all golden docs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fhec demo

# The CI suite: everything except the runs marked slow (at least one real encrypted
# run per backend stays in it).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

# Regenerate the golden files (models, inputs, expected outputs, expected IR, and the
# weights after three training steps).
golden: $(STAMP)
	$(BIN)/python examples/build_models.py --out tests/golden
	$(BIN)/python examples/build_training_golden.py --out tests/golden/training_logreg

# Regenerate docs/ops.md from the converter table.
docs: $(STAMP)
	$(BIN)/python -m fhec.frontend.opsdoc > docs/ops.md

# mypy sees the package as installed (fhec.ir = ir/, ...) through a tree of symlinks.
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf build/typecheck && mkdir -p build/typecheck/fhec
	cp -rs $(CURDIR)/fhec/. build/typecheck/fhec/
	for d in ir frontend passes backends runtime; do ln -s $(CURDIR)/$$d build/typecheck/fhec/$$d; done
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p fhec

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
