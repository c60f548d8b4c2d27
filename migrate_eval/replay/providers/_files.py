"""A fingerprint of the model files a provider loads from disk, for its cache identity.

A provider that loads a model from a folder (``hf-local`` / ``transformers``) must answer from
the cache only for the weights that gave the cached answers: new weights saved at the same path
are another model. :func:`model_files_fingerprint` summarises the files ``from_pretrained``
reads (weights, configuration, tokenizer, chat template: the folder's top-level files with the
suffixes of :data:`MODEL_FILE_SUFFIXES`):

* a file of at most :data:`HASH_LIMIT` bytes (configs, tokenizers, small models) by the
  SHA-256 of its content: exact, and cheap at that size. Content, not mtime, because the usual
  replacement (the same architecture retrained and saved again) keeps every size, and on file
  systems with coarse timestamps (FAT, some network mounts: 1-2 s) a replacement within the
  same second keeps the mtime too;
* a larger file (the weights of a real model: gigabytes, which would take seconds to minutes
  to hash at every run) by its size and ``st_mtime_ns``: ``save_pretrained``, a copy or a
  download writes a new mtime. A copy that keeps the old mtime (``cp -p``, ``rsync -a``) of
  different weights of the same size is not noticed.

A model that is one file (``llama-cpp``: a GGUF file) is fingerprinted the same way by
:func:`model_file_fingerprint`.

The fingerprint changes the cache key, so replaced weights miss the cache and are asked again.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

#: The files a model folder's loader reads: weights, configuration, tokenizer, chat template.
MODEL_FILE_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".onnx",
    ".h5",
    ".msgpack",
    ".json",
    ".model",
    ".txt",
    ".tiktoken",
    ".jinja",
    ".py",
)
#: Files up to this size are fingerprinted by content; larger ones by size and mtime.
HASH_LIMIT = 64 * 1024 * 1024


def _entry(path: Path, hash_limit: int) -> str | None:
    """One file's line of the fingerprint: its content hash, or its size and mtime when it is
    larger than ``hash_limit``; None when it is not a regular file or cannot be read."""
    try:
        st = path.stat()  # follows links: the Hugging Face cache links snapshots to blobs
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size <= hash_limit:
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            return f"{path.name}\0content\0{digest}"
        return f"{path.name}\0stat\0{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        return None


def _digest(entries: list[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def model_files_fingerprint(folder: Path, *, hash_limit: int = HASH_LIMIT) -> str | None:
    """``sha256:<hex>`` over the model files of ``folder`` (see the module docstring), or None
    when ``folder`` is not a folder or holds none of them."""
    try:
        paths = sorted(folder.iterdir())
    except OSError:
        return None
    entries: list[str] = []
    for path in paths:
        if path.name.startswith(".") or path.suffix.lower() not in MODEL_FILE_SUFFIXES:
            continue
        entry = _entry(path, hash_limit)
        if entry is not None:
            entries.append(entry)
    if not entries:
        return None
    return _digest(entries)


def model_file_fingerprint(path: Path, *, hash_limit: int = HASH_LIMIT) -> str | None:
    """The same fingerprint for a model that is one file (a GGUF file: weights, tokenizer and
    chat template in one), or None when ``path`` is not a readable regular file."""
    entry = _entry(path, hash_limit)
    return None if entry is None else _digest([entry])
