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

from pathlib import Path

from dahash.data.specs import (CUSTOM, HASH_ALGORITHMS, DatasetSpec, DomainArchive, RemoteFile, SplitSource,
                               folder_dataset)

__all__ = [
    "RemoteFile",
    "DomainArchive",
    "SplitSource",
    "DatasetSpec",
    "DATASETS",
    "WEIGHTS",
    "WEIGHT_FILES",
    "DIGITS_DOMAINS",
    "weights_path",
    "CUSTOM",
    "HASH_ALGORITHMS",
    "folder_dataset",
    "get_dataset",
    "get_weights",
]

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


#: the digits benchmark's domains (built by :func:`dahash.data.digits.prepare_digits` as <domain>/<digit>/*.png)
DIGITS_DOMAINS: tuple[str, ...] = ("mnist", "usps")

#: file names the `weights` stage writes under data/weights/<backbone>/ (surf800: the folder itself; smallcnn: a
#: marker saying it is trained from scratch)
WEIGHT_FILES: dict[str, str] = {"vggf": "imagenet-vgg-f.mat", "efficientnet_lite0": "efficientnet-lite0.pth",
                                "smallcnn": "NONE.json", "surf800": ".", "vgg16": "vgg16-397923af.pth"}


def weights_path(root: str | Path, backbone: str) -> Path:
    """``<root>/data/weights/<backbone>/<file>``: where the weights stage of the project at ``root`` puts the file.

    Raises:
        KeyError: ``backbone`` is not a key of :data:`WEIGHT_FILES`.
    """
    return Path(root) / "data" / "weights" / backbone / WEIGHT_FILES[backbone]


def _entry(table: dict, name: str, what: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(sorted(table))}") from None


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry ``name``; ``ValueError`` listing the valid names otherwise."""
    return _entry(DATASETS, name, "dataset")


def get_weights(name: str) -> RemoteFile:
    """The ``WEIGHTS`` entry ``name``; ``ValueError`` listing the valid names otherwise."""
    return _entry(WEIGHTS, name, "weights")
