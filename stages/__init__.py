"""Pipeline stages: thin ``python -m stages.<name>`` wrappers around the dahash library.

Each stage parses its arguments, reads and validates params.yaml, calls the library, writes its
outputs atomically and (for training/evaluation) logs to MLflow. The DAG itself is declared once,
in dvc.yaml; the Snakefile builds its rules from DVC's resolved stages.
"""
