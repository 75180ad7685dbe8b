# The two commands a fresh machine needs (README.md): `make demo` and `make test`.
VENV := .venv

.PHONY: demo test lint bench clean

demo:
	scripts/bootstrap.sh
	$(VENV)/bin/pausecast predict examples/busy-database.toml

test:
	scripts/bootstrap.sh dev,dist,executor,fast
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

# fast: benchmarks/bench_sweep.py times the compiled fast path
bench:
	scripts/bootstrap.sh fast
	$(VENV)/bin/python benchmarks/bench_predict.py

clean:
	rm -rf $(VENV) build *.egg-info
