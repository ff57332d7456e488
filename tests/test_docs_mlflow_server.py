"""The documented MLflow server recipes (issue 23 point 15): none binds every interface without authentication.

Before: the cluster recipe (README, then docs/slurm.md) started ``mlflow server --host 0.0.0.0`` with no word about
authentication: anyone reaching the port could read, change and delete every run.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _server_commands() -> list[tuple[str, str]]:
    """``(file, command)`` of every ``mlflow server`` command in the README and docs/ (continuation lines joined)."""
    out = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        out += [(path.name, m.group(0)) for m in re.finditer(r"mlflow server[^\n`]*", text)]
    return out


def test_no_documented_server_listens_on_every_interface() -> None:
    cmds = _server_commands()
    assert cmds, "no mlflow server recipe found"
    for name, cmd in cmds:
        assert not re.search(r"--host\s+['\"]?0\.0\.0\.0", cmd), (name, cmd)


def test_the_cluster_recipe_has_authentication_and_says_how_to_pass_it() -> None:
    slurm = re.sub(r"\\\n\s*", " ", (REPO / "docs" / "slurm.md").read_text())
    recipe = next(m.group(0) for m in re.finditer(r"mlflow server[^\n`]*", slurm))
    assert "--app-name basic-auth" in recipe and "MLFLOW_AUTH_ADMIN_PASSWORD" in slurm
    assert "MLFLOW_TRACKING_USERNAME" in slurm and "MLFLOW_TRACKING_PASSWORD" in slurm
    mlflow_doc = (REPO / "docs" / "mlflow.md").read_text()
    assert "## A shared server with authentication" in mlflow_doc and "reverse proxy" in mlflow_doc
