"""Registry of the datasets and pretrained weights the pipeline can fetch.

Pure data: no I/O happens here (see :mod:`dahash.download` for fetching, verifying and
extracting, and :mod:`dahash.manifest` for listing the images).

Conventions
-----------
* ``DatasetSpec.classes`` is the class order used everywhere: label ``i`` is ``classes[i]``, the
  same for every domain. It is the exact folder names sorted with Python's ``sorted`` (code-point
  order, as ``torchvision.datasets.ImageFolder`` does; so Office-Home's ``TV`` precedes ``Table``).
* ``DatasetSpec.domain_dirs`` maps each domain to the folder holding that domain's class folders,
  relative to the extracted archive's root *below* any single wrapper folder the archive has
  (GitHub archives wrap everything in ``<repo>-<commit>/``; ``dahash.download`` strips such a
  wrapper when it finds one).
* The prepared, normalised layout is always ``<out>/<domain>/<class>/<file>`` with the registry's
  domain names (e.g. Office-Home's ``Real World`` becomes ``RealWorld``).

Checksums
---------
No checksum here is invented. ``sha256=None`` means no published checksum is known for that file;
``dahash.download.fetch`` then downloads without verification, pooch logs the SHA256 of what it got,
and ``prepare_dataset`` records it in ``SOURCE.json`` so that the first verified download can pin it.
Office-Caltech-10 is verified through ``tree_sha256``, a digest of the extracted image tree
(see :func:`dahash.download.tree_digest`), because GitHub's zip archives are not byte-stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "RemoteFile",
    "DatasetSpec",
    "DATASETS",
    "WEIGHTS",
    "get_dataset",
    "get_weights",
]


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes:
        url: where :func:`dahash.download.fetch` downloads it from.
        filename: the name it is stored under (in the cache, and the name a user must give a
            copy placed by hand in the manual folder).
        sha256: published/verified SHA256 (lower-case hex) or ``None`` when none is known.
        size: size in bytes when known (informational), else ``None``.
        note: free text for the user (provenance, why a checksum is missing, how to download by hand).
    """

    url: str
    filename: str
    sha256: str | None
    size: int | None
    note: str


@dataclass(frozen=True)
class DatasetSpec:
    """A multi-domain image dataset laid out as ``<domain>/<class>/<image>``.

    Attributes:
        name: registry key.
        domains: domain names, in the registry's order.
        classes: exact class folder names, sorted; label ``i`` is ``classes[i]`` in every domain.
        archive: the archive to download.
        domain_dirs: domain -> folder (posix, relative to the archive root below any single
            wrapper folder) that holds that domain's class folders.
        homepage: the dataset's home page.
        citation: what to cite.
        tree_sha256: digest of the normalised image tree (:func:`dahash.download.tree_digest`),
            verified after preparation; ``None`` when not known.
        image_counts: number of images per domain when known (informational: reported in error
            messages and ``SOURCE.json``, and a mismatch is warned about).
    """

    name: str
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    archive: RemoteFile
    domain_dirs: dict[str, str] = field(hash=False)
    homepage: str
    citation: str
    tree_sha256: str | None
    image_counts: dict[str, int] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
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
    "No published checksum is known: the file is downloaded unverified, pooch logs the SHA256 of "
    "what it received, and prepare_dataset records it in SOURCE.json; pin that value here after the "
    "first verified download."
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
        sha256=None,
        size=None,
        note=(
            "Official Google Drive file linked from https://www.hemanthdv.org/officeHomeDataset.html. "
            "Google Drive usually answers large files with a confirmation page instead of the file, "
            "so download OfficeHomeDataset_10072016.zip in a browser and put it in the manual folder "
            "(or point the pipeline at an extracted copy as a mirror). The archive holds "
            "OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<class>/. " + _NO_CHECKSUM
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
        sha256=None,
        size=None,
        note=(
            "Google Drive file linked from the Office dataset page "
            "(https://faculty.cc.gatech.edu/~judy/domainadapt/). Google Drive usually answers large "
            "files with a confirmation page instead of the file, so download "
            "domain_adaptation_images.tar.gz in a browser and put it in the manual folder. The archive "
            "holds {amazon,dslr,webcam}/images/<class>/. " + _NO_CHECKSUM
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
        sha256=None,
        size=None,
        note=(
            "GitHub archive of redhat12345/OfficeCaltechDomainAdaptation at commit "
            f"{_OFFICE_CALTECH_COMMIT}; images under <root>/images/<domain>/<class>/*.jpg "
            "(958/1123/157/295 images; 4 caltech10 JPEGs are grayscale). GitHub regenerates zip "
            "archives, so their bytes (and SHA256) are not stable: the archive itself is not "
            "checksummed, the extracted image tree is (DatasetSpec.tree_sha256), whether it comes "
            "from the archive, a mirror or a copy placed by hand."
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
    # computed from the extracted archive (see dahash.download.tree_digest).
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
        sha256=None,
        size=None,
        note=(
            "MatConvNet's ImageNet VGG-F (Chatfield et al., BMVC 2014 'Return of the Devil in the "
            "Details'), the backbone of the DAH paper. " + _NO_CHECKSUM
        ),
    ),
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
