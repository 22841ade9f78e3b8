"""Project-local stack: Apache Kafka (KRaft) and PostgreSQL started from this repository's own files.

`python -m shoppulse.stack up|down|status|logs|env|run|test` is the command line; `make run` and
`make test` call it, and the test suite's fixtures use :func:`shoppulse.stack.services.ensure_up`.
"""
