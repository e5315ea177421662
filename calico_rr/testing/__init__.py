"""Test support imported by the tests and benchmarks only, never by the package
(tests/test_layering.py): fault injection (faults), an in-memory cluster that
executes decisions (sim) and random Calico configurations (random_configs).  What
``demo`` and ``lab`` start locally is product code: :mod:`calico_rr.sandbox`."""
