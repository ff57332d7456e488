"""Progress bars of the long jobs (training epochs, image loops, iterative solvers): one tqdm helper.

:func:`progress` wraps :class:`tqdm.auto.tqdm` with two rules:

* **Where it writes** (``file``, default ``sys.stderr``). On a terminal the bar redraws in place at tqdm's rate
  (nested bars stack). Anywhere else -- a pipe, a log file: a pipeline job's output teed into a log -- the bar
  writes at most one line per :data:`LOG_INTERVAL` seconds (and its first and last state; a transient bar,
  ``leave=False``, nothing before it has run that long), each a plain line (no carriage-return redraws, no cursor
  moves), so a log of an hours-long job stays readable (``tail -f``).
* **Whether it shows**: ``enabled`` (the caller's ``progress`` argument: library functions default to silence)
  and the environment variable :data:`ENV_VAR`: ``DAHASH_PROGRESS=0`` (or ``false``/``no``/``off``) silences
  every bar, e.g. in CI.

A bar only counts and prints: it draws no random number and changes no computation, so results are the same
with or without it. :func:`note` writes a one-off line (e.g. "t-SNE of 1800 points") without tearing a bar.

Example::

    for epoch in progress(range(300), desc="train", unit="epoch", enabled=True):
        ...
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as _display_tqdm
from tqdm.std import tqdm as _console_tqdm

#: True in a Jupyter notebook: tqdm.auto draws a widget there, not text (the log rule does not apply)
_WIDGET = _display_tqdm is not _console_tqdm

__all__ = ["ENV_VAR", "LOG_INTERVAL", "echo", "is_enabled", "label", "loss_postfix", "min_interval", "note", "progress",
           "progress_for"]

#: Environment variable that silences every bar when set to 0 / false / no / off.
ENV_VAR = "DAHASH_PROGRESS"
#: Seconds between two lines of a bar that writes to a log (a stream that is not a terminal).
LOG_INTERVAL = 30.0
_OFF = {"0", "false", "no", "off"}


def is_enabled(enabled: bool = True) -> bool:
    """``enabled``, unless :data:`ENV_VAR` is set to 0 / false / no / off (any case)."""
    return bool(enabled) and os.environ.get(ENV_VAR, "").strip().lower() not in _OFF


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def min_interval(stream: Any = None) -> float:
    """Seconds between two refreshes of a bar on ``stream`` (default ``sys.stderr``): tqdm's 0.1 on a terminal,
    :data:`LOG_INTERVAL` elsewhere."""
    return 0.1 if _is_tty(sys.stderr if stream is None else stream) else LOG_INTERVAL


class _Lines:
    """A log stream for tqdm: each redraw (``"\\r" + status``) becomes one line; blank redraws vanish, and so does
    a line that repeats the previous one but for its times and rate (a bar's last update, then its close)."""

    _TIMES = re.compile(r"\[[^,\]]*,\s*[^,\]]*")  # "[elapsed<remaining, rate" of tqdm's meter

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            part = part.rstrip()
            key = self._TIMES.sub("[", part)
            if part and key != self.last:
                self.stream.write(part + "\n")
                self.last = key
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
             unit: str = "it", enabled: bool = True, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A :class:`tqdm.auto.tqdm` over ``iterable`` (or a manual one of ``total`` steps), by the module's rules.

    ``enabled=False`` or ``DAHASH_PROGRESS=0``: a disabled bar (iterates, counts, prints nothing). Other keyword
    arguments go to tqdm (``initial``, ``leave``, ``postfix``, ...); ``mininterval`` overrides the rule.
    """
    stream = sys.stderr if file is None else file
    if not _WIDGET and not _is_tty(stream):
        stream = _Lines(stream)
        # every bar on "line 0" (no cursor moves between nested bars), refreshed by time only (miniters=1: tqdm's
        # monitor thread then never forces a redraw); a transient bar (leave=False, e.g. one epoch's batches)
        # shows only once it has run LOG_INTERVAL
        kwargs = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "miniters": 1, "position": 0,
                  **({"delay": LOG_INTERVAL} if kwargs.get("leave") is False else {}), **kwargs}
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, disable=not is_enabled(enabled), **kwargs)


def note(message: str, *, enabled: bool = True, file: IO[str] | None = None) -> None:
    """Write ``message`` as its own line to ``file`` (default ``sys.stderr``) above any open bar, unless silenced
    (``enabled=False`` or ``DAHASH_PROGRESS=0``)."""
    if not is_enabled(enabled):
        return
    stream = sys.stderr if file is None else file
    if _WIDGET or _is_tty(stream):
        tqdm.write(message, file=stream)
    else:
        stream.write(message.rstrip("\n") + "\n")
        stream.flush()


def label(progress: bool | str, default: str) -> str | None:
    """The bar label of a ``progress`` argument: None (no bar) for ``False``, ``default`` for ``True`` or an empty
    string, else the string itself."""
    if isinstance(progress, str):
        return progress or default
    return default if progress else None


def loss_postfix(record: dict, keys: Iterable[str]) -> str:
    """``"k=v ..."`` of the ``keys`` present in an epoch's ``record`` (4 significant digits), for a bar's postfix."""
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if k in record)


def progress_for(arg: bool | str, default: str, iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """:func:`progress` for a library function's ``progress`` argument ``arg``: no bar for False, a bar labelled
    ``default`` for True, or labelled ``arg`` for a string (:func:`label`)."""
    desc = label(arg, default)
    return progress(iterable, desc=desc, enabled=desc is not None, **kwargs)


def echo(message: str) -> None:
    """``print(message)`` to stdout (never silenced) without tearing an open bar on a terminal (``tqdm.write``
    clears the bars, prints, redraws them)."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()
