"""`certfed bench`: benchmarks on real processes, each against a baseline in the same run."""
