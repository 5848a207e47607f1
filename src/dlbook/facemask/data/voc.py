"""Annotated photo folders in PASCAL VOC form: where they are, how they parse, the manifest.

A VOC folder holds ``images/`` (one photo per stem) and ``annotations/`` (``<stem>.xml``, one
``<object>`` per face with a ``<name>`` and a ``<bndbox>``). The mask-scenes set sits beside the
face-mask folder (``<face-mask>/../mask-scenes``) or wherever ``$DLBOOK_SCENES`` points;
``data/mask_scenes_manifest.csv`` pins its files by sha256.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dlbook.core import paths
from dlbook.facemask.data.fetch import resolve_data_dir
from dlbook.facemask.data.manifest import DataError, DataUnavailableError, verify_data

SCENE_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
"""The three face classes of the mask-scenes annotations; the index is the label."""

SCENE_FOLDERS = ("images", "annotations")
SCENES_MANIFEST_PATH = paths.REPO_ROOT / "data" / "mask_scenes_manifest.csv"
MASKEDFACENET_FOLDERS = ("correct", "nose_uncovered", "nose_and_mouth_uncovered", "chin_uncovered")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

EDGE_TOLERANCE = 1.0
"""VOC boxes count pixels from 1 and include the last one, so ``xmax`` may equal width + 1; a
box reaching further out is an error. Boxes are clipped to the image after the check."""


class AnnotationError(DataError):
    """A VOC file or photo is unreadable, or its boxes do not fit its image."""


@dataclass(frozen=True)
class Photo:
    """One annotated photo.

    Attributes
    ----------
    stem : the shared file stem of photo and annotation.
    image_path : the photo file.
    width, height : the photo's size in pixels (from the annotation, checked against the file).
    boxes : ndarray, shape (n, 4), float64: x0, y0, x1, y1 in pixels, inside the image.
    labels : ndarray, shape (n,), int64: indices into ``SCENE_CLASSES``.
    """

    stem: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def widths(self) -> np.ndarray:
        """Face widths in pixels, shape (n,)."""
        return self.boxes[:, 2] - self.boxes[:, 0]


def _folder(explicit, variable: str, name: str) -> Path:
    chosen = explicit or os.environ.get(variable)
    if chosen:
        folder = Path(chosen).expanduser().resolve()
        source = "the folder given" if explicit else f"${variable}"
    else:
        try:
            base = resolve_data_dir(download=False)
        except DataUnavailableError as error:
            raise DataUnavailableError(
                f"{name} is found beside the face-mask folder or through ${variable}; "
                f"neither is set ({error})"
            ) from error
        folder, source = base.parent / name, "the face-mask folder's sibling"
    if not folder.is_dir():
        raise DataUnavailableError(
            f"{source} {folder} is not a folder: point ${variable} at the {name} data "
            "(see the data README)"
        )
    return folder


def scenes_dir(folder: str | os.PathLike | None = None) -> Path:
    """The mask-scenes folder: ``folder``, else ``$DLBOOK_SCENES``, else beside the face-mask data.

    Raises
    ------
    DataUnavailableError
        Naming the place looked at, when it is not a folder.
    """
    return _folder(folder, "DLBOOK_SCENES", "mask-scenes")


def maskedfacenet_dir(folder: str | os.PathLike | None = None) -> Path:
    """The maskedfacenet folder: ``folder``, else ``$DLBOOK_MASKEDFACENET``, else beside face-mask."""
    return _folder(folder, "DLBOOK_MASKEDFACENET", "maskedfacenet")


def verify_scenes(folder: str | os.PathLike, allow_mismatch: bool = False):
    """Check the mask-scenes folder against ``data/mask_scenes_manifest.csv`` (see ``verify_data``)."""
    return verify_data(folder, SCENES_MANIFEST_PATH, allow_mismatch, SCENE_FOLDERS)


def _number(node, tag: str, path: Path) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise AnnotationError(f"{path}: <{tag}> is missing")
    try:
        return float(child.text.strip())
    except ValueError:
        raise AnnotationError(f"{path}: <{tag}> is {child.text.strip()!r}, not a number") from None


def parse_annotation(xml_path: str | os.PathLike) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Size, boxes and labels of one VOC file.

    Text outside the tags (such as stray characters after a ``</bndbox>``) is ignored.

    Returns
    -------
    (width, height, boxes, labels): boxes ndarray, shape (n, 4), float64 x0, y0, x1, y1 clipped
    to the image; labels ndarray, shape (n,), int64 into ``SCENE_CLASSES``.

    Raises
    ------
    AnnotationError
        Naming the file: malformed XML, a missing size, an unknown class, an empty box or a box
        reaching outside the image.
    """
    path = Path(xml_path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as error:
        raise AnnotationError(f"{path}: not readable VOC XML ({error})") from None
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{path}: <size> is missing")
    width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{path}: image size {width}x{height} is empty")
    boxes, labels = [], []
    for index, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in SCENE_CLASSES:
            raise AnnotationError(
                f"{path}: object {index} has class {name!r}; expected one of {SCENE_CLASSES}"
            )
        box_node = obj.find("bndbox")
        if box_node is None:
            raise AnnotationError(f"{path}: object {index} has no <bndbox>")
        box = [_number(box_node, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")]
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise AnnotationError(f"{path}: object {index} has an empty box {box}")
        if min(x0, y0) < 0 or x1 > width + EDGE_TOLERANCE or y1 > height + EDGE_TOLERANCE:
            raise AnnotationError(
                f"{path}: object {index}'s box {box} lies outside the {width}x{height} image"
            )
        boxes.append([x0, y0, min(x1, width), min(y1, height)])
        labels.append(SCENE_CLASSES.index(name))
    return (
        width,
        height,
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
    )


def image_for(images_dir: Path, stem: str) -> Path:
    """The photo of ``stem`` in ``images_dir`` (any of ``IMAGE_SUFFIXES``)."""
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise AnnotationError(f"{images_dir / stem}.*: no photo for annotation {stem}.xml")


def load_photo(xml_path: str | os.PathLike, images_dir: str | os.PathLike) -> Photo:
    """Parse one annotation and check its photo exists and has the annotated size."""
    xml_path = Path(xml_path)
    width, height, boxes, labels = parse_annotation(xml_path)
    image_path = image_for(Path(images_dir), xml_path.stem)
    try:
        with Image.open(image_path) as image:
            actual = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise AnnotationError(f"{image_path}: not a readable image ({error})") from None
    if actual != (width, height):
        raise AnnotationError(
            f"{image_path}: the photo is {actual[0]}x{actual[1]} but {xml_path.name} says "
            f"{width}x{height}"
        )
    return Photo(xml_path.stem, image_path, width, height, boxes, labels)


def _stem_order(path: Path):
    digits = "".join(c for c in path.stem if c.isdigit())
    return (path.stem.rstrip("0123456789"), int(digits) if digits else -1, path.stem)


def load_photos(
    images_dir: str | os.PathLike, annotations_dir: str | os.PathLike, report=None
) -> list[Photo]:
    """Every annotated photo of a VOC folder pair, in natural stem order.

    A file that fails (bad XML, no photo, a box outside the image) is reported on ``report``
    (default: stderr) with the reason and skipped.

    Raises
    ------
    AnnotationError
        When a folder is missing, holds no ``.xml`` file, or no file could be read.
    """
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    for folder in (images_dir, annotations_dir):
        if not folder.is_dir():
            raise AnnotationError(f"{folder}: no such folder")
    xml_files = sorted(annotations_dir.glob("*.xml"), key=_stem_order)
    if not xml_files:
        raise AnnotationError(f"{annotations_dir}: no .xml annotation files in this folder")
    photos = []
    for xml_path in xml_files:
        try:
            photos.append(load_photo(xml_path, images_dir))
        except AnnotationError as error:
            print(f"skipped {error}", file=report or sys.stderr)
    if not photos:
        raise AnnotationError(f"{annotations_dir}: none of {len(xml_files)} annotations is usable")
    return photos


def load_scenes(folder: str | os.PathLike | None = None, verify: bool = True) -> list[Photo]:
    """The mask-scenes photos (``scenes_dir(folder)``), checked against the manifest first."""
    root = scenes_dir(folder)
    if verify:
        verify_scenes(root)
    return load_photos(root / "images", root / "annotations")


def class_counts(photos: list[Photo]) -> dict[str, int]:
    """Faces per class over ``photos``."""
    labels = np.concatenate([p.labels for p in photos]) if photos else np.zeros(0, np.int64)
    counts = np.bincount(labels, minlength=len(SCENE_CLASSES))
    return {name: int(n) for name, n in zip(SCENE_CLASSES, counts, strict=True)}
