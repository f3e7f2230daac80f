.PHONY: demo test bench bench-batching bench-gateway lint

demo:  ## build the example models, serve them, send requests, print answers
	scripts/demo

test:  ## make lint, then the whole test suite
	scripts/test

lint:  ## ruff format --check, ruff check, mypy --strict src (scripts/lint)
	scripts/lint

bench:  ## modelyard vs raw model, FastAPI batcher, MLServer: the goals' ratios (BENCH_ARGS=--quick)
	scripts/bootstrap && .venv/bin/python benchmarks/side_by_side.py $(BENCH_ARGS)

bench-batching:  ## the adaptive-batching benchmark alone (see docs/performance.md)
	scripts/bootstrap && .venv/bin/python benchmarks/serve_mlp.py

bench-gateway:  ## one hop through the gateway against direct and nginx (needs nginx and wrk)
	scripts/bootstrap && .venv/bin/python benchmarks/gateway_hop.py
