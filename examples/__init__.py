"""Examples of jobq in applications; each has its own README and tests
(``tests/examples``)."""
