"""stages.finetune.finetune_run(encode_target=...): the pwcf protocol trains on part of the target and encodes all
of it; the trained model and the source codes do not depend on which extra images are encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache
from dahash.nn.augment import ChannelMoments
from dahash.train.head import DAHConfig
from stages.finetune import finetune_run


def _digits(folder: Path, n: int, seed: int) -> tuple[list[Path], np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths, labels = [], []
    for i in range(n):
        y = i % 2
        arr = np.zeros((28, 28), np.uint8)
        arr[:, 4:12] = 200 if y == 0 else 0
        arr[:, 16:24] = 200 if y == 1 else 0
        arr = np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8)
        p = folder / f"{i}.png"
        Image.fromarray(arr, mode="L").save(p)
        paths.append(p)
        labels.append(y)
    return paths, np.array(labels)


def test_encode_target_trains_on_part_and_encodes_all(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    src_paths, ys = _digits(tmp_path / "s", 8, 0)
    tgt_paths, _ = _digits(tmp_path / "t", 10, 1)
    names = [f"{p.parent.name}/{p.name}" for p in src_paths + tgt_paths]  # as the stage: the decode-once cache
    cache = ImageCache(build_image_cache(src_paths + tgt_paths, names, tmp_path / "cache", short_side=28, channels=1))
    src, tgt = CachedImages.of(cache, names[:8]), CachedImages.of(cache, names[8:])
    moments = ChannelMoments(mean=np.array([60.0]), std=np.array([80.0]), cov=np.array([[6400.0]]), count=784 * 18,
                             images=18)
    config = DAHConfig(hash_bits=8, hidden_dims=(16, 16), epochs=1, k_per_class=2)
    kw = {"backbone": "smallcnn", "moments": moments, "device": "cpu", "seed": 0, "num_workers": 0,
          "on_epoch": lambda row: None}
    keep = tgt[1:]  # the pwcf training part: the first image is a query, never trained on
    us_a, ut_a, out_a = finetune_run(src, ys, keep, 2, config, **kw, encode_target=tgt)
    us_b, ut_b, out_b = finetune_run(src, ys, keep, 2, config, **kw)
    assert ut_a.shape == (10, 8) and ut_b.shape == (9, 8)  # all encoded vs the trained part only (default)
    np.testing.assert_array_equal(us_a, us_b)  # same training: the extra encoded image changes nothing
    np.testing.assert_array_equal(ut_a[1:], ut_b)
    for name, value in out_a["state_dict"]["head"].items():
        assert torch.equal(value, out_b["state_dict"]["head"][name]), name
    # the query image is encoded by that final model: the same code as encoding it alone with the trained part
    ut_c = finetune_run(src, ys, keep, 2, config, **kw, encode_target=tgt[:1])[1]
    np.testing.assert_array_equal(ut_c[0], ut_a[0])
