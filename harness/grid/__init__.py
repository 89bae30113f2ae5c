"""Grids of runs: the grid file and its cells (`spec`, `python -m harness.grid`) and where
cells run (`executors`: this process or Ray tasks)."""
