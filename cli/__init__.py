"""The `certfed` command: one thin face over the services, adapters, demo and benchmarks."""
