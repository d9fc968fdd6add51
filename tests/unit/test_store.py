"""The content store: verified writes, resumable ingests and concurrent writers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from dockyard.errors import DigestMismatch, InvalidArgument, NotFound, StoreError
from dockyard.image.store import ContentStore

DATA = b"layer bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
OTHER = "sha256:" + hashlib.sha256(b"other").hexdigest()


def test_put_read_and_list(tmp_path):
    store = ContentStore(tmp_path)
    assert store.put(DATA) == DIGEST
    assert store.has(DIGEST)
    assert store.read(DIGEST) == DATA
    assert store.path(DIGEST) == tmp_path / "blobs" / "sha256" / DIGEST.removeprefix("sha256:")
    with store.open(DIGEST) as f:
        assert f.read(5) == DATA[:5]
    assert list(store.digests()) == [DIGEST]
    assert store.put(DATA, DIGEST) == DIGEST
    assert os.listdir(tmp_path / "ingest") == []


def test_put_mismatch_stores_nothing(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(DigestMismatch, match=OTHER):
        store.put(DATA, OTHER)
    assert not store.has(OTHER)
    assert not store.has(DIGEST)


def test_missing_blob_raises_not_found(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(NotFound, match=DIGEST):
        store.read(DIGEST)
    with pytest.raises(NotFound, match=DIGEST):
        store.delete(DIGEST)
    assert list(store.digests()) == []


def test_invalid_digest_rejected(tmp_path):
    store = ContentStore(tmp_path)
    for bad in ("sha256:../../etc/passwd", "sha256:ABC", "md5:" + "0" * 32, "sha512:" + "0" * 128):
        with pytest.raises(InvalidArgument):
            store.path(bad)


def test_delete_removes_blob(tmp_path):
    store = ContentStore(tmp_path)
    store.put(DATA)
    store.delete(DIGEST)
    assert not store.has(DIGEST)


def test_ingest_commit(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(DIGEST, len(DATA)) as ingest:
        assert ingest.offset == 0
        ingest.write(DATA[:100])
        ingest.write(DATA[100:])
        assert ingest.offset == len(DATA)
        assert ingest.commit() == DIGEST
    assert store.read(DIGEST) == DATA
    assert os.listdir(tmp_path / "ingest") == []


def test_ingest_resumes_after_abort(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(DIGEST, len(DATA)) as ingest:
        ingest.write(DATA[:4000])
    assert not store.has(DIGEST)
    with store.ingest(DIGEST, len(DATA)) as ingest:
        assert ingest.offset == 4000
        ingest.write(DATA[4000:])
        ingest.commit()
    assert store.read(DIGEST) == DATA


def test_ingest_abort_by_exception_keeps_partial(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.ingest(DIGEST) as ingest:
            ingest.write(DATA[:10])
            raise RuntimeError("connection reset")
    with store.ingest(DIGEST) as ingest:
        assert ingest.offset == 10


def test_ingest_reset_starts_over(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(DIGEST) as ingest:
        ingest.write(b"garbage")
    with store.ingest(DIGEST) as ingest:
        assert ingest.offset == 7
        ingest.reset()
        assert ingest.offset == 0
        ingest.write(DATA)
        ingest.commit()
    assert store.read(DIGEST) == DATA


def test_ingest_partial_longer_than_size_discarded(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(DIGEST) as ingest:
        ingest.write(DATA + b"extra")
    with store.ingest(DIGEST, len(DATA)) as ingest:
        assert ingest.offset == 0


def test_ingest_digest_mismatch_leaves_nothing(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(OTHER) as ingest:
        ingest.write(DATA)
        with pytest.raises(DigestMismatch, match=DIGEST):
            ingest.commit()
    assert list(store.digests()) == []
    assert os.listdir(tmp_path / "ingest") == []
    with store.ingest(OTHER) as ingest:
        assert ingest.offset == 0


def test_ingest_size_mismatch(tmp_path):
    store = ContentStore(tmp_path)
    with store.ingest(DIGEST, len(DATA) + 1) as ingest:
        ingest.write(DATA)
        with pytest.raises(DigestMismatch, match="expected"):
            ingest.commit()
    with store.ingest(DIGEST, 10) as ingest:
        with pytest.raises(DigestMismatch):
            ingest.write(DATA)
    assert list(store.digests()) == []
    assert os.listdir(tmp_path / "ingest") == []


def test_two_ingests_same_digest_in_one_process(tmp_path):
    store = ContentStore(tmp_path)
    first = store.ingest(DIGEST)
    second = store.ingest(DIGEST)
    first.write(DATA[:50])
    second.write(DATA)
    first.write(DATA[50:])
    assert second.commit() == DIGEST
    assert first.commit() == DIGEST
    assert store.read(DIGEST) == DATA
    assert list(store.digests()) == [DIGEST]
    assert os.listdir(tmp_path / "ingest") == []


CHILD_INGEST = textwrap.dedent("""
    import os, sys, time
    from dockyard.image.store import ContentStore
    root, name, digest = sys.argv[1], sys.argv[2], sys.argv[3]
    data = bytes.fromhex(sys.stdin.read())
    with ContentStore(root).ingest(digest, len(data)) as ingest:
        # Both children hold an open ingest before either writes.
        open(os.path.join(root, "ready-" + name), "w").close()
        deadline = time.monotonic() + 30
        while len([n for n in os.listdir(root) if n.startswith("ready-")]) < 2:
            if time.monotonic() > deadline:
                sys.exit("the other child never became ready")
            time.sleep(0.01)
        for start in range(0, len(data), 1000):
            ingest.write(data[start : start + 1000])
        ingest.commit()
""")


def test_two_processes_ingest_same_blob(tmp_path):
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD_INGEST, str(tmp_path), str(n), DIGEST],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(2)
    ]
    for child in children:
        child.stdin.write(DATA.hex())
        child.stdin.close()
    errors = [child.stderr.read() for child in children]
    codes = [child.wait(timeout=60) for child in children]
    assert codes == [0, 0], errors
    store = ContentStore(tmp_path)
    assert store.read(DIGEST) == DATA
    assert list(store.digests()) == [DIGEST]
    assert os.listdir(tmp_path / "ingest") == []


def test_write_error_raises_store_error_and_removes_file(tmp_path):
    # RLIMIT_FSIZE makes write() fail with EFBIG, a real OSError that needs neither
    # privileges nor a full disk. A child process takes the limit, so pytest keeps none.
    script = textwrap.dedent(f"""
        import resource, signal, os, sys
        from dockyard.errors import StoreError
        from dockyard.image.store import ContentStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = ContentStore({str(tmp_path)!r})
        ingest = store.ingest({DIGEST!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            ingest.write({DATA!r})
        except StoreError as e:
            print(e)
            sys.exit(0)
        sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert DIGEST in result.stdout
    assert os.listdir(tmp_path / "ingest") == []
    assert list(ContentStore(tmp_path).digests()) == []


def test_closed_ingest_rejects_writes(tmp_path):
    store = ContentStore(tmp_path)
    ingest = store.ingest(DIGEST)
    ingest.write(DATA)
    ingest.commit()
    with pytest.raises(StoreError, match=DIGEST):
        ingest.write(b"more")


def test_stale_private_file_removed(tmp_path):
    store = ContentStore(tmp_path)
    store.ingest(DIGEST).close()
    stale = tmp_path / "ingest" / (DIGEST.removeprefix("sha256:") + ".0123456789abcdef")
    stale.write_bytes(b"left by a crash")
    with store.ingest(DIGEST) as ingest:
        assert not stale.exists()
        ingest.write(DATA)
        ingest.commit()
    assert os.listdir(tmp_path / "ingest") == []


def test_locked_private_file_kept(tmp_path):
    store = ContentStore(tmp_path)
    first = store.ingest(DIGEST)
    second = store.ingest(DIGEST)
    third = store.ingest(DIGEST)
    assert len(os.listdir(tmp_path / "ingest")) == 3
    first.close()
    # The shared file is free again: the next ingest takes it and keeps the busy private files.
    with store.ingest(DIGEST) as fourth:
        assert len(os.listdir(tmp_path / "ingest")) == 3
        fourth.write(DATA)
        fourth.commit()
    second.close()
    third.close()
    assert os.listdir(tmp_path / "ingest") == []
