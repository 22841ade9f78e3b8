# ShopPulse: two commands do all set-up on a fresh machine.
#   make run   the whole stack (Kafka, PostgreSQL, Dagster, API, simulator); Ctrl-C stops it
#   make test  the same set-up, then the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help run test lint bench down status

help:
	@echo "make run    start the whole stack and print its URLs (Ctrl-C stops it)"
	@echo "make test   set up the stack and run the test suite"
	@echo "make lint   ruff"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make down   stop anything the stack left running"

run:
	@UV=$$(scripts/bootstrap.sh) && exec $$UV run --frozen python -m shoppulse.stack run

test:
	@UV=$$(scripts/bootstrap.sh --test) && $$UV run --frozen ruff check . && exec $$UV run --frozen python -m shoppulse.stack test

lint:
	@UV=$$(scripts/bootstrap.sh) && $$UV run --frozen ruff check . && $$UV run --frozen ruff format --check .

bench:
	@UV=$$(scripts/bootstrap.sh) && exec $$UV run --frozen python -m bench

down:
	@UV=$$(scripts/bootstrap.sh) && exec $$UV run --frozen python -m shoppulse.stack down

status:
	@UV=$$(scripts/bootstrap.sh) && exec $$UV run --frozen python -m shoppulse.stack status
