# The two commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test test-sqlite lint format clean translations checkers

$(BIN)/newsletters: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/newsletters
	PORT=$(PORT) $(BIN)/newsletters dev

test: $(BIN)/newsletters lint checkers
	$(BIN)/pytest $(PYTEST_ARGS)

# The page checkers of the browser tests, pinned in tests/browser/tools/package-lock.json:
# axe-core (run in Chromium) and the Nu Html Checker (vnu.jar, run with the machine's Java).
# Without npm they are not installed and their test says so (docs/accessibility.md).
# --ignore-scripts: vnu-jar's install script would fetch a Java runtime; Debian's is used.
CHECKERS := tests/browser/tools
checkers:
	@if command -v npm >/dev/null; then \
		[ $(CHECKERS)/node_modules/.package-lock.json -nt $(CHECKERS)/package-lock.json ] || \
		npm ci --ignore-scripts --no-audit --no-fund --prefix $(CHECKERS); \
	else echo "npm not found: the accessibility and HTML checks will be skipped"; fi

lint: $(BIN)/newsletters
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/newsletters
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

# Extract every string of the product and merge the new ones into the Ukrainian catalogue
# (docs/translating.md); tests/test_translations.py says what is left to translate.
translations: $(BIN)/newsletters
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k _lp:1c,2 -k lazy_pgettext:1c,2 \
		--no-location --sort-output \
		--project newsletters -o newsletters/translations/messages.pot .
	$(BIN)/pybabel update -i newsletters/translations/messages.pot -d newsletters/translations \
		--no-fuzzy-matching --ignore-obsolete -w 100
