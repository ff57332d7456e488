"""Tests of dahash.train.checkpoint and train_dah's checkpoint/resume: atomic files, fingerprints, fallback
from a corrupt checkpoint, and bit-identical resumption (in process and after a real SIGKILL)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dahash.train.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    run_fingerprint,
    save_checkpoint,
    tensor_digest,
)
from dahash.train.sampler import KPerClassSampler
from dahash.train.head import DAHResult, train_dah
from conftest import CHILD_SIGNAL_SRC

C = 3

# The data and config of the subprocess script and of the in-process tests (kept in one string so
# both use exactly the same problem).
PROBLEM_SRC = textwrap.dedent(
    """
    import numpy as np
    import torch

    from dahash.train.head import DAHConfig

    def make_problem():
        g = np.random.default_rng(0)
        mu = 3.0 * g.normal(size=(3, 10))
        ys = np.repeat(np.arange(3), 12)
        xs = mu[ys] + g.normal(size=(ys.size, 10))
        xt = mu[np.repeat(np.arange(3), 16)] + 1.0 + g.normal(size=(48, 10))
        return (torch.tensor(xs, dtype=torch.float32), torch.tensor(ys), torch.tensor(xt, dtype=torch.float32))

    def make_config(epochs):
        return DAHConfig(hash_bits=8, hidden_dims=(32, 32), k_per_class=2, epochs=epochs, lr_start=1e-3,
                         lr_end=1e-4, gamma=50.0, divide_by_batch=False)
    """
)
_ns: dict = {}
exec(PROBLEM_SRC, _ns)  # noqa: S102 - our own constant source
make_problem, make_config = _ns["make_problem"], _ns["make_config"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors; the child script uses one too


@pytest.fixture(scope="module")
def problem():
    return make_problem()


def _same_state(a: DAHResult, b: DAHResult) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def plain6(problem) -> DAHResult:
    xs, ys, xt = problem
    return train_dah(xs, ys, xt, C, make_config(6), seed=5)


# ----------------------------------------------------------------------------- checkpoint module
def test_save_is_atomic_keeps_last_two_and_lists_in_epoch_order(tmp_path: Path) -> None:
    for epoch in (1, 2, 10, 3):
        path = save_checkpoint(tmp_path, epoch, {"fingerprint": "f", "x": torch.tensor([epoch])}, keep=2)
        assert path == checkpoint_path(tmp_path, epoch) and path.is_file()
    # "the last 2" are the two highest epochs; no temporary file is left behind
    assert _names(tmp_path) == ["epoch-0003.pt", "epoch-0010.pt"]
    assert [e for e, _ in list_checkpoints(tmp_path)] == [3, 10]
    data = load_latest_checkpoint(tmp_path, "f")
    assert data is not None and data["epoch"] == 10 and data["x"].tolist() == [10]
    assert load_latest_checkpoint(tmp_path / "missing", "f") is None
    with pytest.raises(ValueError, match="fingerprint"):
        save_checkpoint(tmp_path, 4, {"x": 1})
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 4, {"fingerprint": "f"}, keep=0)


def test_failed_save_leaves_previous_files_and_no_temp(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"fingerprint": "f"})
    with pytest.raises(Exception):  # noqa: B017 - torch.save cannot pickle a lambda
        save_checkpoint(tmp_path, 2, {"fingerprint": "f", "bad": lambda: 0})
    assert _names(tmp_path) == ["epoch-0001.pt"]


def test_digest_and_fingerprint_see_config_seed_and_data() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert tensor_digest(x) == tensor_digest(x.clone()) == tensor_digest(x.numpy())
    assert tensor_digest(x) != tensor_digest(x.reshape(3, 2))  # shape counts
    assert tensor_digest(x) != tensor_digest(x.double())  # dtype counts
    y = x.clone()
    y[1, 2] = torch.nextafter(y[1, 2], torch.tensor(100.0))  # one ulp in one element
    assert tensor_digest(x) != tensor_digest(y)
    base = run_fingerprint({"a": 1.0}, 0, {"x": x})
    assert base == run_fingerprint({"a": 1.0}, 0, {"x": x.clone()})
    assert len({base, run_fingerprint({"a": 2.0}, 0, {"x": x}), run_fingerprint({"a": 1.0}, 1, {"x": x}),
                run_fingerprint({"a": 1.0}, 0, {"x": y}), run_fingerprint({"a": 1.0}, 0, {"x": x}, {"c": 3})}) == 5
    with pytest.raises(ValueError, match="JSON"):
        run_fingerprint({"a": float("nan")}, 0, {})


def test_sampler_state_round_trip_continues_identically() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    a = KPerClassSampler(labels, 3, 2, np.random.default_rng(3))
    for _ in range(3):
        a.next_batch()
    state, rng_state = a.state_dict(), a.rng.bit_generator.state
    expected = [a.next_batch() for _ in range(5)]
    rng = np.random.default_rng(99)
    b = KPerClassSampler(labels, 3, 2, rng)
    b.load_state_dict(state)
    rng.bit_generator.state = rng_state
    assert all(np.array_equal(x, y) for x, y in zip(expected, [b.next_batch() for _ in range(5)]))
    with pytest.raises(ValueError, match=r"perms\[1\]"):
        b.load_state_dict({"perms": [state["perms"][0], np.array([0, 1]), state["perms"][2]],
                           "cursors": state["cursors"]})
    with pytest.raises(ValueError, match=r"cursors\[0\]"):
        b.load_state_dict({"perms": state["perms"], "cursors": [4, 0, 0]})


# ----------------------------------------------------------------------------- train_dah resume
def test_checkpointed_run_equals_plain_run_and_rerun_resumes_at_the_end(problem, plain6, tmp_path: Path) -> None:
    xs, ys, xt = problem
    seen: list[dict] = []
    res = train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2,
                    on_epoch=seen.append)
    assert res.resumed_epoch == 0 and seen == res.history
    assert res.history == plain6.history and _same_state(res, plain6)
    assert _names(tmp_path) == ["epoch-0004.pt", "epoch-0006.pt"]
    ckpt = torch.load(tmp_path / "epoch-0006.pt", weights_only=True)
    assert {"model", "optimizer", "torch_generator", "numpy_rng", "sampler", "history", "epoch",
            "fingerprint"} <= set(ckpt)
    assert ckpt["epoch"] == 6 and ckpt["history"] == plain6.history
    assert ckpt["numpy_rng"]["bit_generator"] == "PCG64" and len(ckpt["sampler"]["perms"]) == C
    assert all(torch.equal(v, plain6.model.state_dict()[k]) for k, v in ckpt["model"].items())
    # a second call finds the finished run: nothing is trained, the same result comes back
    again: list[dict] = []
    done = train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2,
                     on_epoch=again.append)
    assert done.resumed_epoch == 6 and again == []
    assert done.history == plain6.history and _same_state(done, plain6)


class _Stop(Exception):
    pass


def _stop_after(epoch: int):
    def hook(record: dict) -> None:
        if record["epoch"] == epoch:
            raise _Stop

    return hook


def test_interrupted_run_resumes_bit_identically(problem, plain6, tmp_path: Path) -> None:
    xs, ys, xt = problem
    with pytest.raises(_Stop):  # dies after epoch 3: only epoch 2 was checkpointed (never mid-way)
        train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2,
                  on_epoch=_stop_after(3))
    assert _names(tmp_path) == ["epoch-0002.pt"]
    (tmp_path / "epoch-0004.pt.x1y2.tmp").write_bytes(b"half a file")  # as a kill mid-save leaves it
    res = train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert res.resumed_epoch == 2
    assert res.history == plain6.history and _same_state(res, plain6)
    assert _names(tmp_path) == ["epoch-0004.pt", "epoch-0006.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_latest_checkpoint_falls_back_to_previous(problem, plain6, tmp_path: Path, damage: str) -> None:
    xs, ys, xt = problem
    train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2)
    latest = tmp_path / "epoch-0006.pt"
    raw = latest.read_bytes()
    latest.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00not a checkpoint" * 50,
                        "empty": b""}[damage])
    with pytest.warns(RuntimeWarning, match="epoch-0006.pt is unreadable"):
        res = train_dah(xs, ys, xt, C, make_config(6), seed=5, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert res.resumed_epoch == 4
    assert res.history == plain6.history and _same_state(res, plain6)
    assert "epoch-0006.pt.corrupt" in _names(tmp_path) and (tmp_path / "epoch-0006.pt").is_file()


@pytest.mark.parametrize("change", ["config", "seed", "data", "data_shape"])
def test_fingerprint_mismatch_raises_naming_the_file(problem, tmp_path: Path, change: str) -> None:
    xs, ys, xt = problem
    train_dah(xs, ys, xt, C, make_config(2), seed=5, checkpoint_dir=tmp_path, checkpoint_every=1)
    cfg, seed, xt2 = make_config(2), 5, xt
    if change == "config":
        cfg = dataclasses.replace(cfg, gamma=51.0)
    elif change == "seed":
        seed = 6
    elif change == "data":
        xt2 = xt.clone()
        xt2[7, 3] += 1e-3
    else:
        xt2 = xt[:-1]
    with pytest.raises(ValueError, match=r"epoch-0002\.pt.*delete the folder"):
        train_dah(xs, ys, xt2, C, cfg, seed=seed, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert _names(tmp_path) == ["epoch-0001.pt", "epoch-0002.pt"]  # nothing was touched


def test_checkpoint_every_is_validated(problem, tmp_path: Path) -> None:
    xs, ys, xt = problem
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            train_dah(xs, ys, xt, C, make_config(1), checkpoint_dir=tmp_path, checkpoint_every=bad)


def test_same_seed_is_bit_identical_with_and_without_checkpoint_dir(problem, tmp_path: Path) -> None:
    xs, ys, xt = problem
    cfg = make_config(3)
    runs = [
        train_dah(xs, ys, xt, C, cfg, seed=8),
        train_dah(xs, ys, xt, C, cfg, seed=8, checkpoint_dir=tmp_path / "a", checkpoint_every=1),
        train_dah(xs, ys, xt, C, cfg, seed=8, checkpoint_dir=tmp_path / "b", checkpoint_every=2),
    ]
    for other in runs[1:]:
        assert other.history == runs[0].history and _same_state(other, runs[0])
    other_seed = train_dah(xs, ys, xt, C, cfg, seed=9, checkpoint_dir=tmp_path / "c", checkpoint_every=1)
    assert other_seed.history != runs[0].history and not _same_state(other_seed, runs[0])


# ----------------------------------------------------------------------------- a real SIGKILL
EPOCHS = 12
SCRIPT = PROBLEM_SRC + CHILD_SIGNAL_SRC + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import dahash
    from dahash.train.head import train_dah

    torch.set_num_threads(1)
    out, ckpt, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    on_epoch = kill_after_epoch(mode, ckpt)  # signals after epoch 2's checkpoint, then waits for the SIGKILL

    xs, ys, xt = make_problem()
    res = train_dah(xs, ys, xt, 3, make_config(EPOCHS), seed=11, on_epoch=on_epoch, checkpoint_dir=ckpt,
                    checkpoint_every=1)
    torch.save({"state": res.model.state_dict(), "history": res.history, "resumed": res.resumed_epoch,
                "dahash": dahash.__file__}, out)
    """
).replace("EPOCHS", str(EPOCHS))


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, kill_and_resume) -> None:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    ckpt_dir, killed_out = tmp_path / "ckpt", tmp_path / "resumed.pt"
    a = kill_and_resume([sys.executable, str(script), str(killed_out), str(ckpt_dir)], ckpt_dir, killed_out)

    xs, ys, xt = make_problem()  # the uninterrupted reference, same arithmetic (one thread)
    plain = train_dah(xs, ys, xt, C, make_config(EPOCHS), seed=11)
    assert len(a["history"]) == EPOCHS and a["history"] == plain.history
    ref = plain.model.state_dict()
    assert a["state"].keys() == ref.keys()
    assert all(torch.equal(a["state"][k], ref[k]) for k in ref)
