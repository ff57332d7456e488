"""Full fine-tuning fed from the decode-once image cache (CachedImages: loader workers gather bytes, the
augmentation runs on the device): independent of the number of workers, and a run killed with SIGKILL resumes
bit-identically on the CPU (the problem of test_finetune_checkpoint, its images cached)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CHILD_SIGNAL_SRC
from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache
from dahash.nn.augment import EvalTransform
from dahash.train.finetune import encode_images, train_dah_finetune
from test_finetune_checkpoint import PROBLEM_SRC, make_config, make_images, make_models, TRANSFORM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CACHE_SRC = textwrap.dedent(
    """
    def cached_problem(directory):
        \"\"\"(source, ys, target) as CachedImages of one cache built in ``directory`` from the PNGs.\"\"\"
        from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache

        source, ys, target = make_images(directory)
        paths = list(source) + list(target)
        if not (directory / "cache" / "index.json").exists():
            build_image_cache(paths, [p.name for p in paths], directory / "cache", short_side=16, channels=1)
        cache = ImageCache(directory / "cache")
        return CachedImages.of(cache, [p.name for p in source]), ys, CachedImages.of(cache, [p.name for p in target])
    """
)
_ns: dict = {"make_images": make_images}
exec(CACHE_SRC, _ns)  # noqa: S102 - our own constant source
cached_problem = _ns["cached_problem"]


def run(problem, epochs: int, seed: int = 11, **kw):
    trunk, head = make_models(0)
    source, ys, target = problem
    return train_dah_finetune(source, ys, target, 2, make_config(epochs), trunk=trunk, head=head,
                              trunk_pretrained=False, train_transform=TRANSFORM, seed=seed, **kw)


def _same(a, b) -> bool:
    sa, sb = {**a.trunk.state_dict(), **a.head.state_dict()}, {**b.trunk.state_dict(), **b.head.state_dict()}
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cached_training_does_not_depend_on_workers_and_differs_by_seed(tmp_path: Path) -> None:
    problem = cached_problem(tmp_path)
    assert isinstance(problem[0], CachedImages)
    a, b = run(problem, 2), run(problem, 2, num_workers=2)
    assert a.history == b.history and _same(a, b)
    c = run(problem, 2, seed=12)
    assert c.history != a.history
    codes = encode_images(a.trunk, a.head, problem[2], EvalTransform(16, 70.0, 70.0, channels=1, crop_fraction=1.0),
                          batch_size=5, num_workers=2)
    again = encode_images(a.trunk, a.head, problem[2], EvalTransform(16, 70.0, 70.0, channels=1, crop_fraction=1.0),
                          batch_size=5)
    assert codes.shape == (12, 8) and np.array_equal(codes, again)


def test_mixing_cached_and_file_inputs_is_refused(tmp_path: Path) -> None:
    source, ys, target = cached_problem(tmp_path)
    files = make_images(tmp_path)[2]
    with pytest.raises(ValueError, match="both be CachedImages"):
        run((source, ys, files), 1)


SCRIPT = PROBLEM_SRC + CACHE_SRC + CHILD_SIGNAL_SRC + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import dahash
    from dahash.train.finetune import train_dah_finetune

    torch.set_num_threads(1)
    out, images, ckpt, mode = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    on_epoch = kill_after_epoch(mode, ckpt)  # signals after epoch 2's checkpoint, then waits for the SIGKILL

    source, ys, target = cached_problem(images)
    trunk, head = make_models(0)
    res = train_dah_finetune(source, ys, target, 2, make_config(5), trunk=trunk, head=head,
                             trunk_pretrained=False, train_transform=TRANSFORM, seed=11, on_epoch=on_epoch,
                             checkpoint_dir=ckpt, checkpoint_every=1, num_workers=1)
    torch.save({"trunk": res.trunk.state_dict(), "head": res.head.state_dict(), "history": res.history,
                "resumed": res.resumed_epoch, "dahash": dahash.__file__}, out)
    """
)


def test_cached_run_resumes_bit_identically_after_sigkill(tmp_path: Path, kill_and_resume) -> None:
    script = tmp_path / "finetune_cached.py"
    script.write_text(SCRIPT)
    images, ckpt_dir, out = tmp_path / "images", tmp_path / "ckpt", tmp_path / "resumed.pt"
    images.mkdir()
    problem = cached_problem(images)
    a = kill_and_resume([sys.executable, str(script), str(out), str(images), str(ckpt_dir)], ckpt_dir, out)
    plain = run(problem, 5)  # uninterrupted, in this process, no workers
    assert a["history"] == plain.history
    assert all(torch.equal(a["trunk"][k], v) for k, v in plain.trunk.state_dict().items())
    assert all(torch.equal(a["head"][k], v) for k, v in plain.head.state_dict().items())


def test_cache_fingerprint_names_images_by_cache_and_name(tmp_path: Path) -> None:
    """A checkpoint of a run on one cache is not resumed on another S (the images differ)."""
    source, ys, target = cached_problem(tmp_path)
    paths = sorted((tmp_path).glob("*.png"))
    build_image_cache(paths, [p.name for p in paths], tmp_path / "small", short_side=12, channels=1)
    small = ImageCache(tmp_path / "small")
    run((source, ys, target), 1, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match="epoch-0001.pt"):
        run((CachedImages.of(small, source.cache.names[:12]), ys, CachedImages.of(small, target.cache.names[12:])),
            1, checkpoint_dir=tmp_path / "ck")
