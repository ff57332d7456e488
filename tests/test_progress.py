"""Progress bars of the long jobs (dahash.progress): one line per LOG_INTERVAL in a log, redraws on a terminal,
silence with DAHASH_PROGRESS=0, and the same results with a bar as without (training, baselines, analysis)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from dahash import progress as pg
from dahash.baselines.bdnn import BDNN
from dahash.baselines.deep import train_deep_baseline
from dahash.baselines.dpsh import DPSH
from dahash.baselines.jda import JDA
from dahash.baselines.kmh import KMeansHashing
from dahash.baselines.registry import accepted_options, algorithm_of, check_options
from dahash.eval.analysis import a_distance, tsne_embedding
from dahash.train.head import DAHConfig, train_dah
from tests.test_finetune import run_small

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg.ENV_VAR, raising=False)  # a CI setting must not hide what these tests look at


def _loop(stream, **kw) -> None:
    with pg.progress(total=3, desc="outer", unit="epoch", file=stream, **kw) as bar:
        for _ in range(3):
            for _ in pg.progress(range(4), desc="inner", unit="batch", leave=False, file=stream):
                pass
            bar.set_postfix_str("loss=1", refresh=False)
            bar.update()


def test_a_log_gets_plain_lines_at_the_log_interval() -> None:
    log = io.StringIO()
    assert pg.min_interval(log) == pg.LOG_INTERVAL
    bar = pg.progress(total=3, file=log)
    assert bar.mininterval == pg.LOG_INTERVAL and bar.maxinterval == pg.LOG_INTERVAL
    bar.close()
    log = io.StringIO()
    _loop(log)
    text = log.getvalue()
    assert "\r" not in text and "\x1b[" not in text  # no redraws, no cursor moves
    lines = text.splitlines()
    # the first and the last state only: the three updates come within the interval; the short inner bars
    # (leave=False) never show
    assert len(lines) == 2 and "0/3" in lines[0] and "3/3" in lines[1] and "loss=1" in lines[1]
    assert "inner" not in text


def test_a_log_gets_one_plain_line_per_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "LOG_INTERVAL", 0.0)  # every update refreshes: the lines a 30 s interval would thin out
    log = io.StringIO()
    with pg.progress(total=3, desc="train", unit="epoch", file=log) as bar:
        for epoch in range(3):
            bar.set_postfix_str(f"total={epoch}", refresh=False)
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split("|")[2].split()[0] for line in lines] == ["0/3", "1/3", "2/3", "3/3"]  # the close: no repeat
    assert lines[-1].endswith("total=2]") and "\r" not in log.getvalue()


def test_a_terminal_gets_redraws() -> None:
    term = _Terminal()
    assert pg.min_interval(term) == 0.1
    _loop(term)
    text = term.getvalue()
    assert "\r" in text and "outer" in text and "inner" in text and "3/3" in text


def test_env_var_and_flag_silence_every_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("0", "false", "OFF", "no"):
        monkeypatch.setenv(pg.ENV_VAR, value)
        log = io.StringIO()
        _loop(log)
        pg.note("hello", file=log)
        assert log.getvalue() == "" and not pg.is_enabled(True)
    monkeypatch.setenv(pg.ENV_VAR, "1")
    assert pg.is_enabled(True) and not pg.is_enabled(False)
    log = io.StringIO()
    _loop(log, enabled=False)
    assert log.getvalue() == ""
    pg.note("hello", file=log)
    assert log.getvalue() == "hello\n"


def test_echo_prints_to_stdout_even_when_bars_are_off(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(pg.ENV_VAR, "0")
    pg.echo("[dah T seed0] epoch 3/3")
    assert capsys.readouterr().out == "[dah T seed0] epoch 3/3\n"


def test_label_of_a_progress_argument() -> None:
    assert pg.label(False, "train") is None and pg.label(True, "train") == "train"
    assert pg.label("dah Ar_Cl seed0", "train") == "dah Ar_Cl seed0" and pg.label("", "train") == "train"


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    ys = np.repeat(np.arange(3), 10)
    xs = rng.normal(size=(30, 12)).astype(np.float32) + ys[:, None]
    xt = rng.normal(size=(24, 12)).astype(np.float32) + 0.5
    return xs, ys, xt


def _head_run(progress, checkpoint_dir=None):
    xs, ys, xt = _problem()
    config = DAHConfig(hash_bits=8, hidden_dims=(16, 16), k_per_class=2, epochs=3, lr_start=1e-2, lr_end=1e-3)
    return train_dah(torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(xt), 3, config, seed=1,
                     progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=1)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_head_training_bar_names_the_epochs_and_changes_nothing(capfd: pytest.CaptureFixture) -> None:
    quiet = _head_run(False)
    assert capfd.readouterr().err == ""
    shown = _head_run("dah T seed1")
    err = capfd.readouterr().err
    assert "dah T seed1" in err and "3/3" in err and "total=" in err and "epoch" in err
    assert shown.history == quiet.history
    assert _same_state(shown.model.state_dict(), quiet.model.state_dict())


def test_resumed_head_training_starts_the_bar_at_the_resumed_epoch(tmp_path, capfd: pytest.CaptureFixture) -> None:
    first = _head_run(False, tmp_path)
    again = _head_run(True, tmp_path)  # the last checkpoint is epoch 3 of 3: nothing left to train
    err = capfd.readouterr().err
    assert again.resumed_epoch == 3 and again.history == first.history
    assert "3/3" in err and "0/3" not in err


def test_finetune_bars_over_epochs_and_batches_change_nothing(capfd: pytest.CaptureFixture) -> None:
    quiet = run_small(epochs=2)
    shown = run_small(epochs=2, progress="ft")
    err = capfd.readouterr().err
    assert "ft" in err and "2/2" in err and "hash=" in err
    assert shown.history == quiet.history
    assert _same_state(shown.trunk.state_dict(), quiet.trunk.state_dict())
    assert _same_state(shown.head.state_dict(), quiet.head.state_dict())


def test_deep_baseline_bar_names_the_epochs_and_changes_nothing(capfd: pytest.CaptureFixture) -> None:
    xs, ys, xt = _problem()
    kw = dict(hidden_dims=(16, 16), epochs=2, batch_size=8, seed=3, domain_hidden=(8,))
    for method in ("dan", "dann"):
        m0, h0 = train_deep_baseline(method, xs, ys, xt, 3, **kw)
        assert capfd.readouterr().err == ""
        m1, h1 = train_deep_baseline(method, xs, ys, xt, 3, progress=True, **kw)
        err = capfd.readouterr().err
        assert method in err and "2/2" in err and "cls_loss=" in err
        assert h1 == h0 and _same_state(m1.state_dict(), m0.state_dict())


def test_jda_bar_counts_its_passes_and_changes_nothing(capfd: pytest.CaptureFixture) -> None:
    xs, ys, xt = _problem()
    quiet = JDA(dim=5, n_iter=3).fit(xs, ys, xt)
    shown = JDA(dim=5, n_iter=3, progress=True).fit(xs, ys, xt)
    err = capfd.readouterr().err
    assert "jda" in err and "3/3" in err
    assert np.array_equal(shown.W_, quiet.W_) and np.array_equal(shown.pseudo_labels_, quiet.pseudo_labels_)


def test_progress_is_not_an_option_of_params_yaml() -> None:
    for name in ("dan", "jda", "kmh", "bdnn", "noda"):
        assert "progress" not in accepted_options(algorithm_of(name))
    with pytest.raises(ValueError, match="unknown option"):
        check_options("jda", {"progress": True})


def test_analysis_shows_svm_fits_and_tsne_start_and_changes_nothing(capfd: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) + 0.7
    assert a_distance(fs, ft, progress="dan A-distance") == a_distance(fs, ft)
    emb = tsne_embedding(np.vstack([fs, ft]), perplexity=10, max_iter=250, progress="dan")
    assert np.array_equal(emb, tsne_embedding(np.vstack([fs, ft]), perplexity=10, max_iter=250))
    out = capfd.readouterr()
    assert "dan A-distance" in out.err and "5/5" in out.err
    assert "[dan] t-SNE of 80 points x 6 dims" in out.err


def test_image_loops_count_the_images_and_change_nothing(tmp_path, make_image_tree,
                                                         capfd: pytest.CaptureFixture) -> None:
    from dahash.data.manifest import build_manifest
    from dahash.nn.augment import channel_moments
    from tests.test_manifest import SPEC

    rels = make_image_tree(tmp_path, ["src", "tgt"], ["cat", "dog", "owl"], n_per_class=2, size=(20, 16))
    quiet = build_manifest(tmp_path, SPEC)
    shown = build_manifest(tmp_path, SPEC, progress=True)
    paths = [tmp_path / r for r in rels]
    m0 = channel_moments(paths, 8, num_threads=2)
    m1 = channel_moments(paths, 8, num_threads=2, progress="moments src")
    m2 = channel_moments(iter(paths), 8, progress=True)  # an iterator: a bar without a total
    err = capfd.readouterr().err
    assert shown.equals(quiet) and "check images" in err and "12/12" in err
    assert "moments src" in err and f"{len(paths)}/{len(paths)}" in err and "moments: " in err
    for m in (m1, m2):
        assert np.array_equal(m.mean, m0.mean) and np.array_equal(m.cov, m0.cov) and m.images == m0.images


@pytest.mark.parametrize("name, make, total", [
    ("kmh", lambda p: KMeansHashing(8, n_iter=3, progress=p), "2/2"),  # 2 subspaces of 4 bits
    ("bdnn", lambda p: BDNN(4, hidden_dims=(8,), outer_iter=2, inner_iter=3, progress=p), "2/2"),
    ("dpsh", lambda p: DPSH(4, epochs=3, batch_size=8, progress=p), "3/3"),
])
def test_iterative_hashing_bars_count_and_change_nothing(name, make, total, capfd: pytest.CaptureFixture) -> None:
    xs, ys, _ = _problem()
    args = (xs, ys) if name == "dpsh" else (xs,)
    quiet, shown = make(False).fit(*args), make(True).fit(*args)
    err = capfd.readouterr().err
    assert name in err and total in err
    assert np.array_equal(shown.encode(xs), quiet.encode(xs))
