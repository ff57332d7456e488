"""Registry of the datasets and pretrained weights the pipeline can fetch.

Pure data: no I/O happens here (see :mod:`dahash.data.download` for fetching, verifying and
extracting, and :mod:`dahash.data.manifest` for listing the images). The one exception is
:func:`folder_dataset`, which lists the folders of a user's own images to describe them as a
:class:`DatasetSpec` (dataset name :data:`CUSTOM`).

Conventions
-----------
* ``DatasetSpec.classes`` is the class order used everywhere: label ``i`` is ``classes[i]``, the
  same for every domain. It is the exact folder names sorted with Python's ``sorted`` (code-point
  order, as ``torchvision.datasets.ImageFolder`` does; so Office-Home's ``TV`` precedes ``Table``).
* ``DatasetSpec.domain_dirs`` maps each domain to the folder holding that domain's class folders,
  relative to the extracted archive's root *below* any single wrapper folder the archive has
  (GitHub archives wrap everything in ``<repo>-<commit>/``; ``dahash.data.download`` strips such a
  wrapper when it finds one).
* The prepared, normalised layout is always ``<out>/<domain>/<class>/<file>`` with the registry's
  domain names (e.g. Office-Home's ``Real World`` becomes ``RealWorld``).

Checksums
---------
No checksum here is invented. ``RemoteFile.known_hash`` is the checksum as published, in pooch's
format ``"<alg>:<hex>"`` (``alg`` one of md5, sha1, sha256: publishers use all three), and every
copy (downloaded, cached or placed by hand) is verified with that same algorithm.
``known_hash=None`` means no checksum is published for that file; ``dahash.data.download.fetch`` then
downloads without verification, pooch logs the SHA256 of what it got, and ``prepare_dataset``
records it in ``SOURCE.json`` so that the first verified download can pin it.
Office-Caltech-10 is verified through ``tree_sha256``, a digest of the extracted image tree
(see :func:`dahash.data.download.tree_digest`), because GitHub's zip archives are not byte-stable.

Sources
-------
``DatasetSpec.archive`` is the dataset's own archive (Google Drive URLs are fetched with gdown, which
follows Drive's confirmation and virus-scan pages). ``DatasetSpec.alternates`` lists further public
sources tried in order after it, each a :class:`SplitSource`: one archive per domain, as
Transfer-Learning-Library's loaders download them. Their publishers give no checksums, so a copy from
them is only as trustworthy as the host; ``SOURCE.json`` records which source was used and whether
it was verified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "RemoteFile",
    "DomainArchive",
    "SplitSource",
    "DatasetSpec",
    "DATASETS",
    "WEIGHTS",
    "CUSTOM",
    "HASH_ALGORITHMS",
    "folder_dataset",
    "get_dataset",
    "get_weights",
]

#: Checksum algorithms accepted in ``RemoteFile.known_hash``, with their hex digest lengths.
HASH_ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64}

#: Dataset name of a user's own image folders (see :func:`folder_dataset`).
CUSTOM = "custom"

_KNOWN_HASH = re.compile(r"^(md5|sha1|sha256):([0-9a-fA-F]+)$")


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes:
        url: where :func:`dahash.data.download.fetch` downloads it from.
        filename: the name it is stored under (in the cache, and the name a user must give a
            copy placed by hand in the manual folder).
        known_hash: the published checksum in pooch's format ``"<alg>:<hex>"`` with ``alg`` one of
            ``md5``, ``sha1``, ``sha256`` (hex stored lower-case), or ``None`` when no checksum is
            published.
        size: size in bytes when known (informational), else ``None``.
        note: free text for the user (provenance, why a checksum is missing, how to download by hand).

    Raises:
        ValueError: ``known_hash`` is not ``"<alg>:<hex>"`` with a supported ``alg`` and a hex
            digest of that algorithm's length.
    """

    url: str
    filename: str
    known_hash: str | None
    size: int | None
    note: str

    def __post_init__(self) -> None:
        if self.known_hash is None:
            return
        m = _KNOWN_HASH.match(self.known_hash) if isinstance(self.known_hash, str) else None
        if m is None or len(m.group(2)) != HASH_ALGORITHMS[m.group(1)]:
            lengths = ", ".join(f"{a} {n}" for a, n in HASH_ALGORITHMS.items())
            raise ValueError(
                f"RemoteFile {self.filename!r}: known_hash {self.known_hash!r} is not "
                f"'<alg>:<hex>' with alg one of {', '.join(HASH_ALGORITHMS)} and a hex digest of "
                f"that algorithm's length ({lengths} hex digits), e.g. 'md5:' + 32 hex digits; "
                f"use None when no checksum is published"
            )
        object.__setattr__(self, "known_hash", f"{m.group(1)}:{m.group(2).lower()}")

    @property
    def hash_alg(self) -> str | None:
        """Algorithm of ``known_hash`` (``"md5"``, ``"sha1"`` or ``"sha256"``), or ``None``."""
        return self.known_hash.split(":", 1)[0] if self.known_hash else None

    @property
    def hash_hex(self) -> str | None:
        """Hex digest of ``known_hash`` (lower-case), or ``None``."""
        return self.known_hash.split(":", 1)[1] if self.known_hash else None

    @property
    def checksum_text(self) -> str:
        """``"<alg> <hex>"`` (e.g. ``"md5 b1c1..."``) or ``"no published checksum"``, for messages."""
        return f"{self.hash_alg} {self.hash_hex}" if self.known_hash else "no published checksum"


@dataclass(frozen=True)
class DomainArchive:
    """One domain's archive of a :class:`SplitSource`.

    Attributes:
        domain: the registry's domain name it holds.
        remote: the archive.
        folders: candidate folders (posix, relative to the extracted archive below any single
            wrapper folder) holding the domain's class folders; the first that exists and holds
            at least one of the dataset's class folders is used (publishers' layouts are not
            documented, so e.g. both ``amazon/images`` and ``amazon`` are accepted).
    """

    domain: str
    remote: RemoteFile
    folders: tuple[str, ...]


@dataclass(frozen=True)
class SplitSource:
    """A second source of a dataset: one archive per domain (e.g. Transfer-Learning-Library's).

    Attributes:
        name: short name used in messages and ``SOURCE.json``.
        parts: one :class:`DomainArchive` per domain of the dataset.
        note: provenance and what is (not) verified.
    """

    name: str
    parts: tuple[DomainArchive, ...]
    note: str


@dataclass(frozen=True)
class DatasetSpec:
    """A multi-domain image dataset laid out as ``<domain>/<class>/<image>``.

    Attributes:
        name: registry key.
        domains: domain names, in the registry's order.
        classes: exact class folder names, sorted; label ``i`` is ``classes[i]`` in every domain.
        archive: the archive to download; ``None`` for a dataset that exists only as local
            folders (:func:`folder_dataset`), which ``prepare_dataset`` copies from its ``mirror``.
        domain_dirs: domain -> folder (posix, relative to the archive root below any single
            wrapper folder) that holds that domain's class folders.
        homepage: the dataset's home page.
        citation: what to cite.
        tree_sha256: digest of the normalised image tree (:func:`dahash.data.download.tree_digest`),
            verified after preparation; ``None`` when not known.
        image_counts: number of images per domain when known (informational: reported in error
            messages and ``SOURCE.json``, and a mismatch is warned about).
        alternates: further sources, tried in order after ``archive`` (see :class:`SplitSource`).
    """

    name: str
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    archive: RemoteFile | None
    domain_dirs: dict[str, str] = field(hash=False)
    homepage: str
    citation: str
    tree_sha256: str | None
    image_counts: dict[str, int] | None = field(default=None, hash=False)
    alternates: tuple[SplitSource, ...] = ()

    def __post_init__(self) -> None:
        for alt in self.alternates:
            if sorted(p.domain for p in alt.parts) != sorted(self.domains):
                raise ValueError(
                    f"DatasetSpec {self.name!r}: source {alt.name!r} must have exactly one archive per "
                    f"domain {list(self.domains)}, got {[p.domain for p in alt.parts]}"
                )
        if set(self.domain_dirs) != set(self.domains):
            raise ValueError(
                f"DatasetSpec {self.name!r}: domain_dirs keys {sorted(self.domain_dirs)} must be "
                f"exactly the domains {list(self.domains)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"DatasetSpec {self.name!r}: duplicate class names")
        if list(self.classes) != sorted(self.classes):
            raise ValueError(
                f"DatasetSpec {self.name!r}: classes must be sorted (label order is sorted folder names)"
            )
        if self.image_counts is not None and set(self.image_counts) != set(self.domains):
            raise ValueError(f"DatasetSpec {self.name!r}: image_counts keys must be the domains")

    def label_of(self, class_name: str) -> int:
        """Integer label of ``class_name``; ``ValueError`` naming the dataset if unknown."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise ValueError(
                f"class {class_name!r} is not a class of dataset {self.name!r} "
                f"(expected one of its {len(self.classes)} class folders)"
            ) from None


_NO_CHECKSUM = (
    "No checksum is published for this file: it is downloaded unverified, pooch logs the SHA256 of "
    "what it received, and prepare_dataset records it in SOURCE.json; pin that value here (known_hash "
    "'sha256:<hex>') after the first verified download."
)

# --------------------------------------------------------------------------------------------
# Second sources: Transfer-Learning-Library's per-domain archives (Tsinghua cloud)
# --------------------------------------------------------------------------------------------
#: thuml/Transfer-Learning-Library commit whose loaders (tllib/vision/datasets/officehome.py and
#: office31.py, ``download_list``) give these URLs.
TLL_COMMIT = "c4aa59eb565650a552b809411601d0589efbbfe4"
_TLL_NOTE = (
    "One archive per domain, as thuml/Transfer-Learning-Library's loaders download them "
    f"(tllib/vision/datasets/{{loader}}.py at commit {TLL_COMMIT}, download_list). No checksum is "
    "published for these archives, so they are downloaded unverified: SOURCE.json records the "
    "sha256 of every archive, the per-domain image counts (compared with the published counts) and "
    "tree_sha256_verified false. The loaders' image_list files are not needed (the class folders "
    "carry the labels) and are not downloaded."
)


def _tll_part(domain: str, filename: str, key: str, folders: tuple[str, ...]) -> DomainArchive:
    return DomainArchive(
        domain=domain,
        remote=RemoteFile(
            url=f"https://cloud.tsinghua.edu.cn/f/{key}/?dl=1",
            filename=filename,
            known_hash=None,
            size=None,
            note="Transfer-Learning-Library's per-domain archive (no published checksum)",
        ),
        folders=folders,
    )


# --------------------------------------------------------------------------------------------
# Office-Home (Venkateswara et al., CVPR 2017: the DAH paper's own dataset)
# --------------------------------------------------------------------------------------------
_OFFICE_HOME_CLASSES = tuple(
    sorted(
        [
            "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator",
            "Calendar", "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains",
            "Desk_Lamp", "Drill", "Eraser", "Exit_Sign", "Fan", "File_Cabinet", "Flipflops",
            "Flowers", "Folder", "Fork", "Glasses", "Hammer", "Helmet", "Kettle", "Keyboard",
            "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse", "Mug",
            "Notebook", "Oven", "Pan", "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer",
            "Push_Pin", "Radio", "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf",
            "Sink", "Sneakers", "Soda", "Speaker", "Spoon", "TV", "Table", "Telephone",
            "ToothBrush", "Toys", "Trash_Can", "Webcam",
        ]
    )
)

OFFICE_HOME = DatasetSpec(
    name="office_home",
    domains=("Art", "Clipart", "Product", "RealWorld"),
    classes=_OFFICE_HOME_CLASSES,
    archive=RemoteFile(
        url="https://drive.google.com/uc?export=download&id=0B81rNlvomiwed0V1YUxQdC1uOTg",
        filename="OfficeHomeDataset_10072016.zip",
        known_hash="md5:b1c14819770c4448fd5b6d931031c91c",
        size=None,
        note=(
            "Official Google Drive file linked from https://www.hemanthdv.org/officeHomeDataset.html "
            "(in a browser: https://drive.google.com/file/d/0B81rNlvomiwed0V1YUxQdC1uOTg/view?"
            "resourcekey=0-2SNWq0CDAuWOBRRBL7ZZsw, the link with its resource key as public loaders "
            "give it). It is "
            "downloaded with gdown, which follows Drive's confirmation page; if Drive refuses (quota, "
            "or a link that needs its resourcekey, which gdown cannot pass), download "
            "OfficeHomeDataset_10072016.zip in a browser and put it in the manual folder (or point "
            "the pipeline at an extracted copy as a mirror). The archive holds "
            "OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<class>/. The md5 checksum "
            "is the one published in public loaders for this exact file; a copy placed by hand is "
            "checked against it too."
        ),
    ),
    domain_dirs={"Art": "Art", "Clipart": "Clipart", "Product": "Product", "RealWorld": "Real World"},
    homepage="https://www.hemanthdv.org/officeHomeDataset.html",
    citation=(
        "H. Venkateswara, J. Eusebio, S. Chakraborty, S. Panchanathan. Deep Hashing Network for "
        "Unsupervised Domain Adaptation. CVPR 2017."
    ),
    tree_sha256=None,
    image_counts={"Art": 2427, "Clipart": 4365, "Product": 4439, "RealWorld": 4357},
    alternates=(
        SplitSource(
            name="Transfer-Learning-Library per-domain archives",
            parts=(
                _tll_part("Art", "Art.tgz", "6a006656b9a14567ade2", ("Art",)),
                _tll_part("Clipart", "Clipart.tgz", "ae88aa31d2d7411dad79", ("Clipart",)),
                _tll_part("Product", "Product.tgz", "f219b0ff35e142b3ab48", ("Product",)),
                _tll_part("RealWorld", "Real_World.tgz", "6c19f3f15bb24ed3951a",
                          ("Real_World", "Real World", "RealWorld")),
            ),
            note=_TLL_NOTE.format(loader="officehome"),
        ),
    ),
)

# --------------------------------------------------------------------------------------------
# Office-31 (Saenko et al., ECCV 2010)
# --------------------------------------------------------------------------------------------
_OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair",
    "desk_lamp", "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer",
    "letter_tray", "mobile_phone", "monitor", "mouse", "mug", "paper_notebook", "pen", "phone",
    "printer", "projector", "punchers", "ring_binder", "ruler", "scissors", "speaker", "stapler",
    "tape_dispenser", "trash_can",
)

OFFICE31 = DatasetSpec(
    name="office31",
    domains=("amazon", "dslr", "webcam"),
    classes=_OFFICE31_CLASSES,
    archive=RemoteFile(
        url="https://drive.google.com/uc?export=download&id=0B4IapRTv9pJ1WGZVd1VDMmhwdlE",
        filename="domain_adaptation_images.tar.gz",
        known_hash="sha1:7aa25a86f3880b6e79283227816f9d4d8506d636",
        size=None,
        note=(
            "Google Drive file linked from the Office dataset page "
            "(https://faculty.cc.gatech.edu/~judy/domainadapt/; in a browser: "
            "https://drive.google.com/file/d/0B4IapRTv9pJ1WGZVd1VDMmhwdlE/view). It is downloaded with gdown, which "
            "follows Drive's confirmation page; if Drive refuses, download "
            "domain_adaptation_images.tar.gz in a browser and put it in the manual folder. The archive "
            "holds {amazon,dslr,webcam}/images/<class>/. The sha1 checksum is the one published in "
            "public loaders (download scripts) for this exact file; a copy placed by hand is checked "
            "against it too."
        ),
    ),
    domain_dirs={"amazon": "amazon/images", "dslr": "dslr/images", "webcam": "webcam/images"},
    homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/",
    citation=(
        "K. Saenko, B. Kulis, M. Fritz, T. Darrell. Adapting Visual Category Models to New Domains. "
        "ECCV 2010."
    ),
    tree_sha256=None,
    image_counts={"amazon": 2817, "dslr": 498, "webcam": 795},
    alternates=(
        SplitSource(
            name="Transfer-Learning-Library per-domain archives",
            parts=(
                _tll_part("amazon", "amazon.tgz", "ec12dfcddade43ab8101", ("amazon/images", "amazon")),
                _tll_part("dslr", "dslr.tgz", "a41d818ae2f34da7bb32", ("dslr/images", "dslr")),
                _tll_part("webcam", "webcam.tgz", "8a41009a166e4131adcd", ("webcam/images", "webcam")),
            ),
            note=_TLL_NOTE.format(loader="office31"),
        ),
    ),
)

# --------------------------------------------------------------------------------------------
# Office-Caltech-10 (Gong et al., CVPR 2012): the 10 classes shared by Office-31 and Caltech-256
# --------------------------------------------------------------------------------------------
_OFFICE_CALTECH_COMMIT = "74f70487e1b975d1af05bb9a2ecfbf14a7000080"

OFFICE_CALTECH10 = DatasetSpec(
    name="office_caltech10",
    domains=("amazon", "caltech10", "dslr", "webcam"),
    classes=(
        "backpack", "bike", "calculator", "headphones", "keyboard", "laptop", "monitor", "mouse",
        "mug", "projector",
    ),
    archive=RemoteFile(
        url=(
            "https://github.com/redhat12345/OfficeCaltechDomainAdaptation/archive/"
            f"{_OFFICE_CALTECH_COMMIT}.zip"
        ),
        filename=f"OfficeCaltechDomainAdaptation-{_OFFICE_CALTECH_COMMIT}.zip",
        known_hash=None,
        size=None,
        note=(
            "GitHub archive of redhat12345/OfficeCaltechDomainAdaptation at commit "
            f"{_OFFICE_CALTECH_COMMIT}; images under <root>/images/<domain>/<class>/*.jpg "
            "(958/1123/157/295 images; 4 caltech10 JPEGs are grayscale). No checksum is published "
            "for this archive, and GitHub regenerates zip archives, so their bytes are not stable "
            "anyway: the archive itself is not checksummed, the extracted image tree is "
            "(DatasetSpec.tree_sha256), whether it comes from the archive, a mirror or a copy "
            "placed by hand."
        ),
    ),
    domain_dirs={
        "amazon": "images/amazon",
        "caltech10": "images/caltech10",
        "dslr": "images/dslr",
        "webcam": "images/webcam",
    },
    homepage="https://github.com/redhat12345/OfficeCaltechDomainAdaptation",
    citation=(
        "B. Gong, Y. Shi, F. Sha, K. Grauman. Geodesic Flow Kernel for Unsupervised Domain "
        "Adaptation. CVPR 2012. (Images from Office-31, Saenko et al. ECCV 2010, and Caltech-256, "
        "Griffin et al. 2007.)"
    ),
    # sha256 over the sorted lines "<domain>/<class>/<file>\t<sha256 of file>\n" of all 2533 images,
    # computed from the extracted archive (see dahash.data.download.tree_digest).
    tree_sha256="33f067cbc9a1966cb3822b3d71ec9b6acd3e0836af2db92fff7f48998406c141",
    image_counts={"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295},
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (OFFICE_HOME, OFFICE31, OFFICE_CALTECH10)
}

# --------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------
WEIGHTS: dict[str, RemoteFile] = {
    "vggf": RemoteFile(
        url="https://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat",
        filename="imagenet-vgg-f.mat",
        known_hash=None,
        size=None,
        note=(
            "MatConvNet's ImageNet VGG-F (Chatfield et al., BMVC 2014 'Return of the Devil in the "
            "Details'), the backbone of the DAH paper. " + _NO_CHECKSUM
        ),
    ),
    # torchvision publishes the first 8 hex digits of the sha256 in the file name and checks only that
    # prefix (torch.hub's check_hash). The full sha256 (and size 553,433,881 bytes) is the one recorded
    # by several independent public projects that downloaded this file; it starts with that prefix
    # (tests/test_vgg16.py checks the prefix against the file name).
    "vgg16": RemoteFile(
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        filename="vgg16-397923af.pth",
        known_hash="sha256:397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        size=553_433_881,
        note=(
            "torchvision's ImageNet VGG-16 (IMAGENET1K_V1; Simonyan & Zisserman, ICLR 2015), the "
            "backbone of the cross-domain hashing papers since PWCF. A plain state_dict (BSD-3-Clause "
            "torchvision; ImageNet terms apply to the weights). The full sha256 is published in public loaders "
            "and projects that pinned this file; torchvision itself checks only its 8-digit prefix, 397923af, "
            "which is in the file name."
        ),
    ),
}

# --------------------------------------------------------------------------------------------
# SURF-800 features of Office-Caltech-10 (Gong et al. CVPR 2012): the "surf800" backbone
# --------------------------------------------------------------------------------------------
_VIGGIN_COMMIT = "c04dd84d7dfabea06eb44e07cda039df56cd8cc4"
_SURF_SHA256 = {
    "surf/amazon.mat": "df32548b994e18d364c99e1f317e1fae100597259f0423a41b90f4f68187bb1f",
    "surf/caltech10.mat": "4f9334c8ced489d5054de97a5fd51a61f017f3bcd1f38c9a85c6d78cb9d7bda5",
    "surf/dslr.mat": "44d673c68e1d07b837893aa74dba3b986e4a6cc3fd66f0dd357683bdef059216",
    "surf/webcam.mat": "a6a9c78b4b7181dfbb58bcfd351d4ebd737f171c31247b8884948aa156d3f700",
    "surf_imgnames/Caltech10_SURF_L10_imgs.mat": "9f11333e518aa550464464dc0490576d9779ef7d18b9cbbab5195526d8de5ee5",
    "surf_imgnames/amazon_SURF_L10_imgs.mat": "6d1624443b99f69a2f80bdfea25800f49c339db2f702ce06328618ae7e3b7e59",
    "surf_imgnames/dslr_SURF_L10_imgs.mat": "ef8db1910ca89c717b8c992de1c4a1923694e6f2138465cee8483924c9aaef45",
    "surf_imgnames/webcam_SURF_L10_imgs.mat": "35a6b38a2df34af6f7a34e0030e89f71540aefac84f0ea8645b3a85d57c9e6be",
}


def _surf_url(relpath: str) -> str:
    if relpath.startswith("surf/"):
        return ("https://raw.githubusercontent.com/redhat12345/OfficeCaltechDomainAdaptation/"
                f"{_OFFICE_CALTECH_COMMIT}/features/{relpath}")
    return ("https://raw.githubusercontent.com/viggin/domain-adaptation-toolbox/"
            f"{_VIGGIN_COMMIT}/ToRelease_GFK/data/{relpath.split('/', 1)[1]}")


#: relative path under the surf800 weights folder -> file. The feature files come from the same
#: repository and commit as the Office-Caltech-10 images (features/surf/<domain>.mat); the image-name
#: index (row order) from the GFK authors' data as mirrored in viggin/domain-adaptation-toolbox.
#: sha256 values are of those files; a mirror (data.mirror/features/<relpath>) must match them.
SURF800_FILES: dict[str, RemoteFile] = {
    rel: RemoteFile(
        url=_surf_url(rel),
        filename=rel.split("/", 1)[1],
        known_hash=f"sha256:{digest}",
        size=None,
        note="SURF-800 bag-of-words features of Office-Caltech-10 (GFK release, Gong et al. CVPR 2012)",
    )
    for rel, digest in _SURF_SHA256.items()
}


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}"
        ) from None


def get_weights(name: str) -> RemoteFile:
    """The ``WEIGHTS`` entry ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return WEIGHTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown weights {name!r}; valid names: {', '.join(sorted(WEIGHTS))}"
        ) from None


# --------------------------------------------------------------------------------------------
# A user's own image folders
# --------------------------------------------------------------------------------------------
def _list_preview(names: Sequence[str], limit: int = 20) -> str:
    shown = list(names[:limit])
    return str(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def folder_dataset(root: Path, domains: Sequence[str], name: str = CUSTOM) -> DatasetSpec:
    """Describe a user's own images ``root/<domain>/<class>/<image>`` as a :class:`DatasetSpec`.

    ``classes`` are the class sub-folder names, sorted (hidden names, starting with ``.``, are
    ignored); every domain must have exactly the same class folders, so that label ``i`` means the
    same class in every domain. The spec has no archive (``prepare_dataset`` copies it from its
    ``mirror``, i.e. ``root``), no ``tree_sha256``, no ``image_counts``, no homepage, and
    ``domain_dirs`` maps each domain to the folder of the same name. The spec does not depend on
    where ``root`` is, so one read from a prepared copy equals the one read from the original. Only
    folder names are read; images are not opened.

    Args:
        root: the folder holding one sub-folder per domain.
        domains: the domain folder names to use (other folders under ``root`` are ignored).
        name: the dataset name (:data:`CUSTOM` by default).

    Raises:
        ValueError: ``root`` or a domain folder is missing, ``domains`` is empty, repeats a name or
            holds a name that is not a plain folder name, a domain has no class folders, or the
            class folders differ between domains (the message lists which classes are missing
            from which domain folder).
    """
    root = Path(root)
    domains = tuple(domains)
    if not root.is_dir():
        raise ValueError(
            f"dataset {name!r}: {root} is not a folder; point it at the folder holding your "
            f"<domain>/<class>/<image> folders"
        )
    if not domains:
        raise ValueError(f"dataset {name!r}: no domains given; name the domain folders under {root}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"dataset {name!r}: domains {list(domains)} repeat a name")
    for d in domains:
        if not isinstance(d, str) or not d or d.startswith(".") or Path(d).name != d or "\\" in d:
            raise ValueError(
                f"dataset {name!r}: domain {d!r} must be the plain name of a folder directly under "
                f"{root} (no path separators, not hidden)"
            )
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_domain: dict[str, list[str]] = {}
    for d in domains:
        ddir = root / d
        if not ddir.is_dir():
            raise ValueError(
                f"dataset {name!r}: domain folder {ddir} is missing (folders found under {root}: "
                f"{_list_preview(present)}); create it or fix the domain names"
            )
        classes = sorted(c.name for c in ddir.iterdir() if c.is_dir() and not c.name.startswith("."))
        if not classes:
            raise ValueError(
                f"dataset {name!r}: domain folder {ddir} has no class sub-folders; expected "
                f"{ddir}/<class>/<image>"
            )
        per_domain[d] = classes
    all_classes = sorted(set().union(*per_domain.values()))
    missing = {d: [c for c in all_classes if c not in set(cs)] for d, cs in per_domain.items()}
    if any(missing.values()):
        lines = "; ".join(
            f"{root / d} lacks {_list_preview(m)}" for d, m in missing.items() if m
        )
        raise ValueError(
            f"dataset {name!r}: the class folders differ between the domains under {root} "
            f"(every domain needs the same <class> folders, so that a label means the same class "
            f"everywhere): {lines}. Add the missing class folders or remove the extra ones."
        )
    return DatasetSpec(
        name=name,
        domains=domains,
        classes=tuple(all_classes),
        archive=None,
        domain_dirs={d: d for d in domains},
        homepage="",  # path-independent: the spec read from a copy equals the original's
        citation="the user's own images (cite their source)",
        tree_sha256=None,
        image_counts=None,
    )
