"""What several test files share: identities, the federation's offices, the `certfed` runner.

The PostgreSQL bootstrap is not here: the benchmarks use it too, so it lives in
`cli.bench.kit` and tests/conftest.py builds its fixtures on it.
"""
