# Two commands after cloning: `make demo` (set up + run the pipeline on generated data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= configs/demo.toml
WORKDIR ?= work/demo

.PHONY: install demo test test-slow clean

$(BIN)/hmgnn: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[serve,test]'
	touch $(BIN)/hmgnn

install: $(BIN)/hmgnn

demo: install
	PATH=$(BIN):$$PATH bash scripts/demo.sh $(CONFIG) $(WORKDIR)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf work
