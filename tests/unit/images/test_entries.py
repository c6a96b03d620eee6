"""Records of tar members: the common-case builder against the general one."""

from __future__ import annotations

import itertools
import tarfile

import pytest

from hyperlane.images.entries import EntryKind, _general_entry, make_entry

PATHS = [
    "bin/tool",
    "tool",
    "etc/.wh.old",
    ".wh.old",
    "etc/.wh..wh..opq",
    ".wh..wh..opq",
    "etc/.wh..wh.plnk",
    "dir/.wh.hidden/file",
    "a.wh.b/c",
    "usr/lib/x\udcff\udcfe",
    "",
]
TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
]


def member(member_type: bytes, sparse: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo("ignored")
    info.type = member_type
    info.size = 1234
    info.mode = 0o4755
    info.uid = 1000
    info.gid = 100
    info.linkname = "target"
    # Only whether sparse is None matters to the records.
    info.sparse = b"map" if sparse else None
    return info


@pytest.mark.parametrize(
    ("path", "member_type", "sparse"),
    list(itertools.product(PATHS, TYPES, [False, True])),
)
def test_make_entry_matches_general(
    path: str, member_type: bytes, sparse: bool
) -> None:
    info = member(member_type, sparse)
    digest = b"\x01" * 16
    assert make_entry(3, path, info, digest) == _general_entry(3, path, info, digest)


def test_make_entry_kinds() -> None:
    assert make_entry(0, "bin/tool", member(tarfile.REGTYPE, False), None).kind is (
        EntryKind.FILE
    )
    whiteout = make_entry(0, "etc/.wh.old", member(tarfile.REGTYPE, False), None)
    assert whiteout.kind is EntryKind.WHITEOUT
    assert whiteout.path == "etc/old"
    opaque = make_entry(0, "etc/.wh..wh..opq", member(tarfile.REGTYPE, False), None)
    assert opaque.kind is EntryKind.OPAQUE
    assert opaque.path == "etc"
    link = make_entry(0, "bin/alias", member(tarfile.SYMTYPE, False), None)
    assert link.link_target == "target"
    assert link.size_bytes == 0
