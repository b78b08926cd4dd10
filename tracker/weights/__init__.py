"""SAM 2.1 checkpoints: a registry, a verified resumable download, and a safe loader.

Why this exists: the tracker loads hundreds of megabytes of third-party weights into a
process that answers a treatment console. A truncated download, a mirror's HTML error page
or a tampered file must never be loaded silently, and loading must never run code from the
file. So:

* every download is checked against a SHA-256 before it is moved into the cache, and a file
  that fails is deleted rather than kept around to be picked up later;
* downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request, because the
  large checkpoint is ~900 MB and clinical networks drop connections;
* the verified ``.part`` is renamed into place with :func:`os.replace`, so the cache holds
  either nothing or a complete, verified file under the final name;
* :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: tensors and plain
  containers only, never arbitrary pickled objects.

Where the hashes come from. Meta publishes the download URLs (the sam2 repository's
``checkpoints/download_ckpts.sh`` and README) but **no checksums**. The SHA-256 values in
:mod:`~tracker.weights.registry` are the ones pinned by the micro-sam project
(``computational-cell-analytics/micro-sam``, ``micro_sam/v2/util.py``, ``HASHES``) for these
exact ``dl.fbaipublicfiles.com/.../092824/`` URLs, which micro-sam verifies on every
download. They agree with many independent repositories that recorded the hashes and byte
sizes of their own downloads of the same URLs, and with the Hugging Face mirrors
(``facebook/sam2.1-hiera-*``), whose Git-LFS storage addresses files by SHA-256. They are
therefore third-party observations, not a statement by Meta; a registry entry may carry
``sha256=None`` and then :func:`fetch` refuses to finish unless the caller supplies a hash
(``--sha256 HEX``) or explicitly accepts trust on first use (``--trust-on-first-use``), which
records the computed hash in the cache's ``manifest.json`` and verifies against it from then
on. Trust on first use only detects *later* changes; it does not prove the first download
was genuine.

Not handled: two processes fetching the same file into the same cache at the same moment
(they would share the ``.part``; the hash check still stops a corrupted result from being
installed).

Layout: :mod:`~tracker.weights.registry` (the known checkpoints, the cache folder),
:mod:`~tracker.weights.manifest` (hashes, ``manifest.json``, model directories),
:mod:`~tracker.weights.download` (:func:`fetch`), :mod:`~tracker.weights.loader`
(:func:`load_checkpoint`), :mod:`~tracker.weights.cli` (``tracker weights``) and
:mod:`~tracker.weights.errors`.
"""

from tracker.weights.cli import add_cli
from tracker.weights.download import fetch
from tracker.weights.errors import CheckpointError, ChecksumMismatch, UnverifiedDownloadRefused, WeightsError
from tracker.weights.loader import load_checkpoint
from tracker.weights.manifest import MANIFEST_NAME, register_local, sha256_file, verify_model_file
from tracker.weights.registry import (
    WEIGHTS_DIR_ENV,
    WeightInfo,
    default_weights_dir,
    list_weights,
    resolve_model,
)

__all__ = [
    "MANIFEST_NAME",
    "WEIGHTS_DIR_ENV",
    "CheckpointError",
    "ChecksumMismatch",
    "UnverifiedDownloadRefused",
    "WeightInfo",
    "WeightsError",
    "add_cli",
    "default_weights_dir",
    "fetch",
    "list_weights",
    "load_checkpoint",
    "register_local",
    "resolve_model",
    "sha256_file",
    "verify_model_file",
]
