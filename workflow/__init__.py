"""Orchestration helpers (Snakemake side). Imported by the Snakefile only."""
