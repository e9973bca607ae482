"""jobq's benchmark: ``python -m bench`` from the repository root.

Each measurement runs in a fresh interpreter (``python -m bench.child``) so
one workload's heap, caches and threads never colour the next; the parent
only orchestrates, interleaves the backends run by run, takes medians and
reports. See ``bench/README.md``.
"""
