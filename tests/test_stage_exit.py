"""A stage run as a program ends through stages.common.exit_now (no module teardown) and loses nothing of a
normal exit: exit status, buffered output, atexit handlers, non-daemon threads' work; called from Python,
its main returns or raises as any function."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import atexit, sys, tempfile, threading, time
    from pathlib import Path
    from stages.common import StageError, main_wrapper

    out = Path(sys.argv[1])
    keep = tempfile.TemporaryDirectory()  # removed by its finalizer at exit (an atexit hook)
    (out / "tmpdir").write_text(keep.name)

    def late() -> None:
        time.sleep(0.3)
        (out / "thread").write_text("done")

    @main_wrapper
    def main(argv=None) -> None:
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        threading.Thread(target=late).start()  # non-daemon: the exit waits for it
        sys.stdout.write("no newline, still buffered")  # a pipe: block-buffered until the exit flushes it
        if sys.argv[2] == "fail":
            raise StageError("a user error")

    main()
    (out / "after_main").write_text("main returned to the module")
""")


def run_script(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "stage_like.py"
    script.write_text(SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    return subprocess.run([sys.executable, str(script), str(tmp_path), mode], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize(("mode", "status"), [("ok", 0), ("fail", 1)])
def test_a_stage_run_as_a_program_exits_at_once_losing_nothing(tmp_path: Path, mode: str, status: int) -> None:
    res = run_script(tmp_path, mode)
    assert res.returncode == status, res.stderr
    assert res.stdout == "no newline, still buffered"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"
    assert not Path((tmp_path / "tmpdir").read_text()).exists()
    assert not (tmp_path / "after_main").exists()  # the process ended inside main_wrapper
    if mode == "fail":
        assert res.stderr.strip() == "ERROR: a user error"


def test_called_from_python_main_returns_and_raises() -> None:
    from stages.common import StageError, main_wrapper

    calls = []
    ok = main_wrapper(lambda argv: calls.append(argv))
    assert ok(["--x"]) is None and calls == [["--x"]]

    def bad(argv: list[str] | None) -> None:
        raise StageError("nope")

    with pytest.raises(SystemExit) as exc:
        main_wrapper(bad)([])
    assert exc.value.code == 1
