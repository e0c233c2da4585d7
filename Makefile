# mmfeatvis developer entry points. Each target sets up .venv first (idempotent).
PYTHON := .venv/bin/python

.PHONY: env test lint unit quick demo readme-images clean

env:
	bash scripts/setup_env.sh

lint: env
	$(PYTHON) -m flake8 mmfeatvis tools tests benchmarks configs scripts
	$(PYTHON) -m isort --check-only --diff mmfeatvis tools tests benchmarks configs

unit: env
	$(PYTHON) -m pytest -q

# The fast loop: everything but Runner trainings of real models and CLI
# subprocesses (the tests marked slow).
quick: env
	$(PYTHON) -m pytest -q -m "not slow"

# The README's test command, and the one CI runs: lint, then the whole suite.
test: lint unit

# The script sets up .venv itself, so that it also runs on its own.
demo:
	bash scripts/run_demo.sh

# Every picture the README shows, made anew from the demo's output.
readme-images: demo
	$(PYTHON) scripts/readme_images.py work_dirs/demo docs/images

clean:
	rm -rf work_dirs .pytest_cache
