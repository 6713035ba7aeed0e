# Two commands after cloning: `make demo` (set up + run the pipeline on generated data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= configs/demo.toml

.PHONY: install demo test test-slow clean

$(BIN)/hmgnn: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[serve,test,peers]'
	touch $(BIN)/hmgnn

install: $(BIN)/hmgnn

# The whole chain on generated data; each step skips when its output is up to date.
demo: install
	$(BIN)/hmgnn synth       -c $(CONFIG)
	$(BIN)/hmgnn ingest      -c $(CONFIG)
	$(BIN)/hmgnn build-graph -c $(CONFIG)
	$(BIN)/hmgnn sample      -c $(CONFIG)
	$(BIN)/hmgnn train       -c $(CONFIG)
	$(BIN)/hmgnn train       -c $(CONFIG) --recipe reference
	$(BIN)/hmgnn evaluate    -c $(CONFIG)
	$(BIN)/hmgnn recommend   -c $(CONFIG) --customer-id \
	    $$($(BIN)/python -c "import polars as pl, tomllib; w = tomllib.load(open('$(CONFIG)', 'rb'))['workdir']; \
	      t = pl.read_parquet(w + '/tables/transactions.parquet', n_rows=1); c = pl.read_parquet(w + '/tables/customers.parquet'); \
	      print(c['customer_id'][int(t['customer_index'][0])])")

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf work
