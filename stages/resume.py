"""What a resumable training job shares (the train stage, the fine-tuned comparison methods of the baseline stage):
its MLflow run kept across a kill, the epochs that run already holds, and the image-decoding workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stages import tracking


def loader_workers(setting: int | str, device: str) -> int:
    """``train.num_workers``: a number, or ``auto`` = cores - 2 on a GPU (decoding must keep up with it), 0 on
    the CPU (the training itself uses the cores there)."""
    import os

    if setting != "auto":
        return int(setting)
    return max(0, (os.cpu_count() or 1) - 2) if device.startswith("cuda") else 0


def resumable_run(ckpt: Path, start: Callable[[], str]) -> tuple[str, bool]:
    """The MLflow run of an interrupted job (its id is kept beside the checkpoints), else a new one; and
    whether it is the interrupted job's.

    A resumed job keeps logging into the same run, so the per-epoch history stays one series.
    """
    marker = ckpt / "mlflow_run_id"
    if marker.exists():
        run_id = marker.read_text().strip()
        try:
            tracking.client().get_run(run_id)
            return run_id, True
        except Exception:  # the store was reset: start afresh
            pass
    run_id = start()
    ckpt.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_id)
    return run_id, False


def logged_epochs(run_id: str) -> set[int]:
    """Epochs (steps of the ``total`` loss) the MLflow run already holds: empty for a new run.

    Also empty when the store cannot answer: tracking never fails a training (at worst an epoch the killed
    attempt had sent is sent again).
    """
    try:
        return {int(m.step) for m in tracking.client().get_metric_history(run_id, "total")}
    except Exception:  # noqa: BLE001 - any store failure: log everything, as a fresh run does
        return set()


def restored_unlogged(history: list[dict], logged: set[int], resumed: int) -> list[dict]:
    """Rows of epochs 1..``resumed`` (restored from a checkpoint, never passed to ``on_epoch`` in this job)
    that the MLflow run does not hold: the killed attempt had not flushed them yet (it logs every 10 epochs).

    With them the run's per-epoch series is complete after a resume, each epoch once.
    """
    return [h for h in history if h["epoch"] <= resumed and int(h["epoch"]) not in logged]
