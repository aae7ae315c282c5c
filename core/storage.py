"""Local paths and URIs (s3://..., file://...) through pyarrow.fs, for every layer of udalab.

Results, checkpoints and artifacts may live on a node's disk, a shared file system or an S3
bucket; these helpers read and write them alike. udalab.core imports nothing of udalab.
"""
from __future__ import annotations

import os
import urllib.parse
import uuid

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


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write a whole file, replacing what was there; a reader sees the old or the new content, never
    half of one (locally a temporary file renamed over it; an object store's PUT is atomic)."""
    fs, path = fs_path(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        os.replace(_written_beside(path, data), path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def create_exclusive(uri: str | os.PathLike, data: bytes) -> bool:
    """Write a whole file only where none is: True when this call created it, False when one was
    there. Of callers racing on one name exactly one gets True, on a local or shared POSIX file
    system (a hard link of a written temporary file, which fails where the name exists; NFS too)
    and on S3 (a conditional PUT, If-None-Match: *, through boto3: the `aws` extra; AWS S3, MinIO
    and moto honour it). Other URI schemes have no such write and are refused."""
    fs, path = fs_path(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = _written_beside(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    if isinstance(fs, pafs.S3FileSystem):
        return _s3_create_exclusive(str(uri), data)
    raise ValueError(f"{uri}: no exclusive create on a {fs.type_name} file system; use a local path, a shared "
                     f"file system (file://) or s3://")


def _written_beside(path: str, data: bytes) -> str:
    """A new temporary file holding `data` in the folder of `path` (made if missing)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    return tmp


def _s3_create_exclusive(uri: str, data: bytes) -> bool:
    try:
        import boto3
        from botocore.exceptions import ClientError
    except ImportError as e:
        raise ImportError(f"{uri}: an exclusive create on S3 needs boto3: pip install 'udalab[aws]'") from e
    parts = urllib.parse.urlsplit(uri)
    options = dict(urllib.parse.parse_qsl(parts.query))
    endpoint = options.get("endpoint_override")
    client = boto3.client("s3", region_name=options.get("region"),
                          endpoint_url=f"{options.get('scheme', 'https')}://{endpoint}" if endpoint else None,
                          aws_access_key_id=options.get("access_key"), aws_secret_access_key=options.get("secret_key"),
                          aws_session_token=options.get("session_token"))
    try:
        client.put_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"), Body=data, IfNoneMatch="*")
    except ClientError as e:
        # 412: the object exists; 409: a concurrent conditional write to it is in flight (AWS's answer to
        # a race; the caller looks again)
        if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def delete(uri: str | os.PathLike) -> None:
    """Delete a file or a folder with everything under it; nothing there is no error."""
    fs, path = fs_path(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass
