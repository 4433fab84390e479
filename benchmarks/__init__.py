"""Benchmarks: scripts that measure canary and print tables (saved under ``results/``)."""
