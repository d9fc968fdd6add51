"""Downloads for ``ADD <url>``: the file is stored as it is, never extracted, as Docker's builder does.

Only ``http`` and ``https`` URLs are fetched. The file's name in the image is
the last segment of the URL's path (when the destination is a directory), its
mode 0600 unless ``--chmod`` says otherwise, and its modification time comes
from the ``Last-Modified`` header when the server sends one.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import BuildError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
TIMEOUT = 60.0  # seconds without progress before a download fails
URL_SCHEMES = ("http", "https")
DOWNLOAD_MODE = 0o600


@dataclass(frozen=True)
class Download:
    """A downloaded file in a private temporary directory; ``remove`` deletes it."""

    path: Path
    name: str            # the last segment of the URL's path
    mtime: float

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def is_url(source: str) -> bool:
    """Return whether an ADD source is a URL (any scheme) or a git address, not a context path."""
    scheme = urllib.parse.urlsplit(source).scheme
    return (bool(scheme) and "://" in source) or source.startswith("git@")


def download(url: str, work_dir: Path) -> Download:
    """Fetch ``url`` into a new temporary directory under ``work_dir``; raises BuildError naming the URL."""
    import urllib.error
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise BuildError(f"ADD {url}: only http and https URLs can be downloaded (git sources are not supported)")
    name = posixpath.basename(parts.path.rstrip("/"))
    work_dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="build-download-", dir=work_dir))
    target = directory / "download"
    log.debug("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, open(target, "wb") as file:
            while chunk := response.read(CHUNK_SIZE):
                file.write(chunk)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as error:
        target.unlink(missing_ok=True)
        directory.rmdir()
        raise BuildError(f"failed to download {url}: HTTP status {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        target.unlink(missing_ok=True)
        directory.rmdir()
        raise BuildError(f"failed to download {url}: {getattr(error, 'reason', error)}") from error
    mtime = 0.0
    if modified:
        import email.utils

        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            log.debug("ignoring the invalid Last-Modified header %r of %s", modified, url)
    return Download(target, name, mtime)
