"""The face-mask dataset: where it is, whether it is intact, how it is decoded and split.

The images live outside the repository (``--data-dir``, ``$DLBOOK_DATA`` or ``data/face-mask/``);
``data/face_mask_manifest.csv`` pins every file by sha256. Decoding copes with the real files' mix
of formats and modes; an unreadable file is reported by name and skipped, never fatal. Decoded
arrays are cached on disk by (data fingerprint, image size, colour mode).

One module per step, every public name re-exported here (``data.load_face_mask``):

- ``manifest``: the classes, the manifest and the check of a folder against it;
- ``fetch``: locating the data folder, downloading the pinned archive;
- ``decode``: image files to uint8 arrays, cached;
- ``split``: near-duplicate hashes and groups, the grouped split, grouped folds and the plain
  stratified split it is compared with;
- ``load``: ``load_face_mask`` and the ``ImageSet`` it returns;
- ``synthetic``: a tiny synthetic dataset in the same folder format, for tests.
"""

from dlbook.facemask.data.decode import (
    BACKGROUND,
    COLOR_MODES,
    ImageDecodeError,
    decode_image,
    decode_images,
)
from dlbook.facemask.data.fetch import (
    DEFAULT_DATA_DIR,
    UPSTREAM_COMMIT,
    UPSTREAM_URL,
    download_dataset,
    resolve_data_dir,
)
from dlbook.facemask.data.load import ImageSet, load_face_mask
from dlbook.facemask.data.manifest import (
    CLASS_NAMES,
    MANIFEST_COLUMNS,
    MANIFEST_PATH,
    DataError,
    DataUnavailableError,
    DataVerificationError,
    VerificationReport,
    build_manifest,
    describe_file,
    file_sha256,
    list_image_files,
    manifest_sha256,
    read_manifest,
    verify_data,
    verify_files,
    write_manifest,
)
from dlbook.facemask.data.split import (
    DUPLICATE_MAX_DISTANCE,
    HASH_METHODS,
    PHASH_MAX_DISTANCE,
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    connected_groups,
    difference_hash,
    duplicate_groups,
    duplicate_pairs,
    exact_duplicate_pairs,
    grouped_folds,
    grouped_split,
    hamming_distances,
    near_duplicate_pairs,
    perceptual_hash,
    stratified_split,
    stratified_subset,
)
from dlbook.facemask.data.synthetic import make_synthetic_dataset

__all__ = [
    "BACKGROUND",
    "CLASS_NAMES",
    "COLOR_MODES",
    "DEFAULT_DATA_DIR",
    "DUPLICATE_MAX_DISTANCE",
    "HASH_METHODS",
    "MANIFEST_COLUMNS",
    "MANIFEST_PATH",
    "PHASH_MAX_DISTANCE",
    "SPLIT_FRACTIONS",
    "SPLIT_NAMES",
    "UPSTREAM_COMMIT",
    "UPSTREAM_URL",
    "DataError",
    "DataUnavailableError",
    "DataVerificationError",
    "ImageDecodeError",
    "ImageSet",
    "VerificationReport",
    "build_manifest",
    "connected_groups",
    "decode_image",
    "decode_images",
    "describe_file",
    "difference_hash",
    "download_dataset",
    "duplicate_groups",
    "duplicate_pairs",
    "exact_duplicate_pairs",
    "file_sha256",
    "grouped_folds",
    "grouped_split",
    "hamming_distances",
    "list_image_files",
    "load_face_mask",
    "make_synthetic_dataset",
    "manifest_sha256",
    "near_duplicate_pairs",
    "perceptual_hash",
    "read_manifest",
    "resolve_data_dir",
    "stratified_split",
    "stratified_subset",
    "verify_data",
    "verify_files",
    "write_manifest",
]
