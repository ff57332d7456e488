"""Checkpoint/resume of full fine-tuning (train_dah_finetune with checkpoint_dir): a checkpointed run
equals a plain one, a run resumed after a real SIGKILL ends bit-identical, and a checkpoint from
another run (config, seed, images, trunk) is refused with an error naming the file."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dahash.train.finetune import FinetuneResult, train_dah_finetune
from conftest import CHILD_SIGNAL_SRC

# The problem of the in-process tests and of the subprocess script (one string: the same problem).
# 12 source + 12 target 16x16 grayscale images, 2 classes (a bright bar's position), SmallCNN trunk
# from scratch; batches of 2 per class -> 3 batches per epoch.
PROBLEM_SRC = textwrap.dedent(
    """
    import numpy as np
    import torch
    from PIL import Image

    from dahash.nn.augment import TrainTransform
    from dahash.nn.backbones.smallcnn import SmallCNN
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig

    def make_images(directory=None):
        \"\"\"(source, ys, target): PIL images, or PNG paths written into ``directory``.\"\"\"
        g = np.random.default_rng(0)
        out = {}
        for side, offset in (("source", 0), ("target", 1)):
            ys = (np.arange(12) + offset) % 2
            items = []
            for i, y in enumerate(ys):
                x = g.integers(0, 60, (16, 16)).astype(np.uint8)
                x[:, 2 + 7 * int(y): 7 + 7 * int(y)] = 220
                img = Image.fromarray(x, "L")
                if directory is not None:
                    path = directory / f"{side}-{i:02d}.png"
                    img.save(path)
                    img = path
                items.append(img)
            out[side] = (items, ys)
        return out["source"][0], out["source"][1], out["target"][0]

    def make_models(seed=0):
        g = torch.Generator().manual_seed(seed)
        trunk = SmallCNN(in_channels=1, feature_dim=24, input_size=16, fc3_groups=1, init_std=None, generator=g)
        head = DAHHead(24, (16, 16), 8, generator=g)
        return trunk, head

    def make_config(epochs):
        return DAHConfig(hash_bits=8, hidden_dims=(16, 16), k_per_class=2, epochs=epochs, lr_start=1e-2,
                         lr_end=1e-3, gamma=50.0)

    TRANSFORM = TrainTransform(16, mean=70.0, std=70.0, channels=1, flip=False, scale=(0.85, 1.0), brightness=4.0)
    """
)
_ns: dict = {}
exec(PROBLEM_SRC, _ns)  # noqa: S102 - our own constant source
make_images, make_models, make_config, TRANSFORM = (_ns[k] for k in ("make_images", "make_models", "make_config",
                                                                     "TRANSFORM"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(source, ys, target, epochs: int, seed: int = 3, model_seed: int = 0, config=None, **kw) -> FinetuneResult:
    trunk, head = make_models(model_seed)
    return train_dah_finetune(source, ys, target, 2, config or make_config(epochs), trunk=trunk, head=head,
                              trunk_pretrained=False, train_transform=TRANSFORM, seed=seed, **kw)


def _states(res: FinetuneResult) -> dict[str, torch.Tensor]:
    return {**{f"trunk.{k}": v for k, v in res.trunk.state_dict().items()},
            **{f"head.{k}": v for k, v in res.head.state_dict().items()}}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def pil_problem():
    return make_images()


@pytest.fixture(scope="module")
def plain4(pil_problem) -> FinetuneResult:
    return run(*pil_problem, epochs=4)


def test_checkpointed_run_equals_plain_run_and_rerun_resumes_at_the_end(pil_problem, plain4, tmp_path: Path) -> None:
    seen: list[dict] = []
    res = run(*pil_problem, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=1, on_epoch=seen.append)
    assert res.resumed_epoch == 0 and seen == res.history
    assert res.history == plain4.history and _same(_states(res), _states(plain4))
    assert _names(tmp_path) == ["epoch-0003.pt", "epoch-0004.pt"]
    ckpt = torch.load(tmp_path / "epoch-0004.pt", weights_only=True)
    assert {"trunk", "head", "optimizer", "torch_generator", "numpy_rng", "sampler", "history", "epoch",
            "fingerprint"} <= set(ckpt)
    assert ckpt["epoch"] == 4 and ckpt["history"] == plain4.history
    assert _same({**{f"trunk.{k}": v for k, v in ckpt["trunk"].items()},
                  **{f"head.{k}": v for k, v in ckpt["head"].items()}}, _states(plain4))
    # a second call finds the finished run: nothing is trained, the same result comes back
    again: list[dict] = []
    done = run(*pil_problem, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=1, on_epoch=again.append)
    assert done.resumed_epoch == 4 and again == []
    assert done.history == plain4.history and _same(_states(done), _states(plain4))


class _Stop(Exception):
    pass


def test_in_process_interruption_resumes_bit_identically(pil_problem, plain4, tmp_path: Path) -> None:
    def stop_after_3(record: dict) -> None:
        if record["epoch"] == 3:
            raise _Stop

    with pytest.raises(_Stop):  # epoch 3 ends without a checkpoint (every 2): resume from epoch 2
        run(*pil_problem, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=2, on_epoch=stop_after_3)
    assert _names(tmp_path) == ["epoch-0002.pt"]
    seen: list[dict] = []
    res = run(*pil_problem, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=2, on_epoch=seen.append)
    assert res.resumed_epoch == 2 and [r["epoch"] for r in seen] == [3, 4]
    assert res.history == plain4.history and _same(_states(res), _states(plain4))


@pytest.mark.parametrize("change", ["config", "seed", "image", "path", "trunk", "trunk_pretrained"])
def test_fingerprint_mismatch_raises_naming_the_file(tmp_path: Path, change: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source, ys, target = make_images(images)  # paths
    ckpt = tmp_path / "ckpt"
    run(source, ys, target, epochs=1, checkpoint_dir=ckpt, checkpoint_every=1)
    kw: dict = {"config": make_config(1), "seed": 3, "model_seed": 0}
    if change == "config":
        kw["config"] = dataclasses.replace(kw["config"], gamma=51.0)
    elif change == "seed":
        kw["seed"] = 4
    elif change == "image":  # same pixels as PIL images instead of paths: another list of images
        from PIL import Image

        source = [Image.open(p).copy() for p in source]
    elif change == "path":
        target = [*target[1:], target[0]]
    else:  # another initial trunk (the head stays the same), or the trunk declared pretrained
        if change == "trunk":
            kw["model_seed"] = 1
        else:
            trunk, head = make_models(0)
            with pytest.raises(ValueError, match=r"epoch-0001\.pt.*delete the folder"):
                train_dah_finetune(source, ys, target, 2, make_config(1), trunk=trunk, head=head,
                                   trunk_pretrained=True, train_transform=TRANSFORM, seed=3, checkpoint_dir=ckpt)
            return
    with pytest.raises(ValueError, match=r"epoch-0001\.pt.*delete the folder"):
        run(source, ys, target, epochs=1, checkpoint_dir=ckpt, checkpoint_every=1, **kw)
    assert _names(ckpt) == ["epoch-0001.pt"]  # nothing was touched


def test_pil_images_are_fingerprinted_by_their_pixels(pil_problem, tmp_path: Path) -> None:
    source, ys, target = pil_problem
    run(source, ys, target, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=1)
    # equal pixels in new objects: the same run (resumes at the end)
    copies = [img.copy() for img in source]
    assert run(copies, ys, target, epochs=1, checkpoint_dir=tmp_path).resumed_epoch == 1
    changed = [img.copy() for img in source]
    changed[5].putpixel((0, 0), (changed[5].getpixel((0, 0)) + 1) % 256)
    with pytest.raises(ValueError, match=r"epoch-0001\.pt"):
        run(changed, ys, target, epochs=1, checkpoint_dir=tmp_path)


def test_checkpoint_every_is_validated(pil_problem, tmp_path: Path) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            run(*pil_problem, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=bad)


# ----------------------------------------------------------------------------- a real SIGKILL
EPOCHS = 6
SCRIPT = PROBLEM_SRC + CHILD_SIGNAL_SRC + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import dahash
    from dahash.train.finetune import train_dah_finetune

    torch.set_num_threads(1)
    out, images, ckpt, mode = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

    on_epoch = kill_after_epoch(mode, ckpt)  # signals after epoch 2's checkpoint, then waits for the SIGKILL

    source, ys, target = make_images(images)
    trunk, head = make_models(0)
    res = train_dah_finetune(source, ys, target, 2, make_config(EPOCHS), trunk=trunk, head=head,
                             trunk_pretrained=False, train_transform=TRANSFORM, seed=11, on_epoch=on_epoch,
                             checkpoint_dir=ckpt, checkpoint_every=1)
    torch.save({"trunk": res.trunk.state_dict(), "head": res.head.state_dict(), "history": res.history,
                "resumed": res.resumed_epoch, "dahash": dahash.__file__}, out)
    """
).replace("EPOCHS", str(EPOCHS))


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, kill_and_resume) -> None:
    script = tmp_path / "finetune_script.py"
    script.write_text(SCRIPT)
    images, ckpt_dir, killed_out = tmp_path / "images", tmp_path / "ckpt", tmp_path / "resumed.pt"
    images.mkdir()
    source, ys, target = make_images(images)
    args = [sys.executable, str(script), str(killed_out), str(images), str(ckpt_dir)]
    a = kill_and_resume(args, ckpt_dir, killed_out)

    # the uninterrupted reference, in this process (same problem, same one-thread arithmetic)
    trunk, head = make_models(0)
    plain = train_dah_finetune(source, ys, target, 2, make_config(EPOCHS), trunk=trunk, head=head,
                               trunk_pretrained=False, train_transform=TRANSFORM, seed=11)
    assert len(a["history"]) == EPOCHS and a["history"] == plain.history
    assert _same(a["trunk"], plain.trunk.state_dict()) and _same(a["head"], plain.head.state_dict())
