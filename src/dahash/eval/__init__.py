"""Evaluation: metrics, the Hamming kernel, scoring a run, the query split, feature analysis."""
