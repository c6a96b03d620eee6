# Two commands for a fresh Debian 12 machine, as root:
#   make demo   audit the bundled sample image
#   make test   run the whole test suite (unit, lint, type checks and real engines)
# Both first run scripts/setup.sh, which installs and starts what is missing.

.PHONY: setup demo test test-unit

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/hyperlane audit --out hyperlane-audit

test: setup
	.venv/bin/pytest

test-unit: setup
	.venv/bin/pytest -m "not integration"
