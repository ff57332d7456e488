"""Run stages in process against a temporary project: point every loaded ``stages.*`` module's ``ROOT`` at it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def point_stages_at(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Every ``stages.*`` module in ``sys.modules`` that bound the real project root (``stages.paths.ROOT``, and
    the modules that re-export it) gets ``root`` instead, undone with ``mp``."""
    from stages import paths

    real = paths.ROOT
    for name, mod in list(sys.modules.items()):
        if (name == "stages" or name.startswith("stages.")) and getattr(mod, "ROOT", None) == real:
            mp.setattr(mod, "ROOT", root)
