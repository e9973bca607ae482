"""Chaos scenarios: jobq's delivery promises under real faults, counted.

``python -m bench.chaos`` runs every scenario at full size and prints a table
(scenario, backend, jobs, faults injected, lost, duplicated, max recovery
time); ``tests/reliability`` runs the same scenario functions at CI size and
asserts the promises. :mod:`bench.chaos.harness` is the shared machinery.
"""
