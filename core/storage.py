"""Local paths and URIs (s3://..., file://...) through pyarrow.fs, for every layer of udalab.

Results, checkpoints and artifacts may live on a node's disk, a shared file system or an S3
bucket; these helpers read and write them alike. udalab.core imports nothing of udalab.
"""
from __future__ import annotations

import os

import pyarrow.fs as pafs



def fs_path(uri: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow FileSystem of a local path or URI (s3://..., file://...) and the path in it.
    With `filesystem`, `uri` is a path inside that file system (e.g. a SubTreeFileSystem)."""
    uri = str(uri)
    if filesystem is not None:
        return filesystem, uri.rstrip("/") or "/"
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


def join_path(base: str, *parts: str) -> str:
    """`base/part/...` with "/" (file-system paths, not OS paths)."""
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def uri_join(uri: str | os.PathLike, *parts: str) -> str:
    """`uri/part/...` for a local path or a URI whose options follow its path, kept at the end:
    uri_join("s3://b/results?endpoint_override=minio:9000&scheme=http", "study") is
    "s3://b/results/study?endpoint_override=minio:9000&scheme=http" (an S3-compatible server)."""
    head, sep, query = str(uri).partition("?") if "://" in str(uri) else (str(uri), "", "")
    return join_path(head, *parts) + sep + query


def uri_parent(uri: str | os.PathLike) -> str:
    """The folder holding `uri` (its options kept)."""
    head, sep, query = str(uri).partition("?") if "://" in str(uri) else (str(uri), "", "")
    head = head.rstrip("/")
    return (head.rsplit("/", 1)[0] if "/" in head else ".") + sep + query


def uri_name(uri: str | os.PathLike) -> str:
    """The last part of `uri`'s path (without its options)."""
    return (str(uri).partition("?")[0] if "://" in str(uri) else str(uri)).rstrip("/").rsplit("/", 1)[-1]


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    """A plain file exists at `path`."""
    return fs.get_file_info(path).type == pafs.FileType.File


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    """A folder exists at `path`."""
    return fs.get_file_info(path).type == pafs.FileType.Directory


def list_dir(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """The entries of a folder (not recursive); [] when it does not exist or cannot be listed."""
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []


def read_text(fs: pafs.FileSystem, path: str) -> str | None:
    """A file's text (UTF-8, undecodable bytes replaced); None when it cannot be read."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, OSError):
        return None


def is_local(uri: str | os.PathLike) -> bool:
    """A local path or a file:// URI (results can be returned as a Path)."""
    return "://" not in str(uri) or str(uri).startswith("file://")
