"""Archive layouts, platforms, compression, digests and damaged archives."""

from __future__ import annotations

import gc
import json
import logging
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from hyperlane.errors import ImageInvalid, UsageError
from hyperlane.exitcodes import ExitCode
from hyperlane.images import ImageAnalysis, analyze_archive, detect_layout
from hyperlane.images.archive import stack_archive
from tests.unit.images.builders import (
    compress,
    docker25_archive_members,
    docker_archive_members,
    file,
    gzip_members,
    hardlink,
    image_config,
    layer_tar,
    oci_archive_members,
    oci_index,
    oci_manifest_of,
    oci_members,
    platform_index_members,
    set_oci_manifest,
    sha256,
    symlink,
    write_directory,
    write_tar,
    zstd_frames,
)

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")

# The sample image: the upper layer overwrites etc/conf, deletes etc/old and adds
# a symlink, so each per-layer count is exercised.
LOWER = layer_tar(
    [
        file("bin/tool", b"t" * 40),
        file("etc/conf", b"c" * 12),
        file("etc/old", b"o" * 7),
    ]
)
UPPER = layer_tar(
    [file("etc/conf", b"d" * 5), symlink("bin/alias", "tool"), file("etc/.wh.old", b"")]
)

# Hand-counted per layer: size_bytes, regular_file_bytes, files_added,
# files_modified, files_removed, hidden_bytes, entries. The lower layer ships
# 40 + 12 + 7 bytes, of which etc/conf (12) and etc/old (7) end up hidden. The
# upper layer ships 5 bytes and the 4-byte symlink target "tool".
EXPECTED_LAYERS = [(59, 59, 3, 0, 0, 19, 3), (9, 5, 1, 1, 1, 0, 3)]
# Path, kind of the visible entry, layer and size of the content it shows.
EXPECTED_VISIBLE = [
    ("bin/alias", "symlink", 1, 0),
    ("bin/tool", "file", 0, 40),
    ("etc/conf", "file", 1, 5),
]


def layer_figures(result: ImageAnalysis) -> list[tuple[int, ...]]:
    return [
        (
            layer.size_bytes,
            layer.regular_file_bytes,
            layer.files_added,
            layer.files_modified,
            layer.files_removed,
            layer.hidden_bytes,
            layer.entries,
        )
        for layer in result.layers
    ]


def visible(path: Path, **options: Any) -> list[tuple[str, str, int, int]]:
    """Return path, entry kind, content layer and content size of each final file."""
    return [
        (
            found.path,
            found.entry.kind.value,
            found.content.layer_index,
            found.content.size_bytes,
        )
        for found in stack_archive(path, **options).visible_files()
    ]


def assert_sample(result: ImageAnalysis) -> None:
    """Check every figure of an analysis of the sample image LOWER, UPPER."""
    assert layer_figures(result) == EXPECTED_LAYERS
    assert [layer.diff_id for layer in result.layers] == [sha256(LOWER), sha256(UPPER)]
    assert [layer.tar_bytes for layer in result.layers] == [len(LOWER), len(UPPER)]
    assert result.files_total == 3
    assert result.visible_bytes == 45
    assert result.hidden_bytes == 19
    assert result.total_size_bytes == 68
    assert result.hidden_percent == pytest.approx(19 * 100 / 64)
    assert result.sparse_files == []


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_docker_archive_compression(tmp_path: Path, compression: str | None) -> None:
    # The legacy layout: <id>/layer.tar, <config digest>.json and manifest.json.
    members = docker_archive_members([LOWER, UPPER], compression)
    path = write_tar(tmp_path / "image.tar", members)
    result = analyze_archive(path)
    assert_sample(result)
    assert visible(path) == EXPECTED_VISIBLE
    assert result.reference == "example.test/app:1"
    assert result.archive_bytes == path.stat().st_size


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_oci_archive_compression(tmp_path: Path, compression: str | None) -> None:
    path = write_tar(
        tmp_path / "image.tar", oci_archive_members([LOWER, UPPER], compression)
    )
    result = analyze_archive(path)
    assert_sample(result)
    assert visible(path) == EXPECTED_VISIBLE
    assert result.reference == "example.test/app:1"


def test_oci_directory(tmp_path: Path) -> None:
    root = write_directory(tmp_path / "layout", oci_archive_members([LOWER, UPPER]))
    result = analyze_archive(root)
    assert_sample(result)
    assert visible(root) == EXPECTED_VISIBLE
    blob_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert result.archive_bytes == blob_bytes


@pytest.mark.parametrize("kind", [None, "docker-archive", "oci-archive"])
def test_docker25_layout(tmp_path: Path, kind: str | None) -> None:
    # Docker 25 and later write an OCI layout with manifest.json pointing into it.
    members = docker25_archive_members([LOWER, UPPER], "gzip")
    path = write_tar(tmp_path / "image.tar", members)
    result = analyze_archive(path, kind=kind)
    assert_sample(result)
    assert visible(path, kind=kind) == EXPECTED_VISIBLE
    expected_reference = "example.test/app:1" if kind == "oci-archive" else None
    assert result.reference == (expected_reference or "example.test/app:25")


def test_docker25_detected_as_docker(tmp_path: Path) -> None:
    members = docker25_archive_members([LOWER, UPPER])
    assert detect_layout(write_tar(tmp_path / "image.tar", members)) == "docker-archive"


@pytest.mark.parametrize("kind", [None, "oci-archive"])
def test_docker25_null_manifests(
    tmp_path: Path, kind: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    members = docker25_archive_members([LOWER, UPPER])
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": None}).encode()
    path = write_tar(tmp_path / "image.tar", members)
    with caplog.at_level(logging.WARNING, logger="hyperlane.images.archive"):
        result = analyze_archive(path, kind=kind)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert_sample(result)
    assert visible(path, kind=kind) == EXPECTED_VISIBLE
    assert result.reference == "example.test/app:25"
    if kind == "oci-archive":
        assert warned == [
            f"index.json in {path} lists no manifests; reading manifest.json instead"
        ]
    else:
        assert warned == []


def test_null_manifests_without_fallback(tmp_path: Path) -> None:
    members = oci_archive_members([LOWER, UPPER])
    members["index.json"] = b'{"schemaVersion": 2, "manifests": null}'
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match="has no manifests list") as caught:
        analyze_archive(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", [None, "oci-archive"])
def test_docker25_empty_oci_layers(
    tmp_path: Path, kind: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    members = docker25_archive_members([LOWER, UPPER])
    manifest = oci_manifest_of(members)
    set_oci_manifest(members, {**manifest, "layers": []})
    path = write_tar(tmp_path / "image.tar", members)
    with caplog.at_level(logging.WARNING, logger="hyperlane.images.archive"):
        result = analyze_archive(path, kind=kind)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert_sample(result)
    assert visible(path, kind=kind) == EXPECTED_VISIBLE
    assert len(warned) == (1 if kind == "oci-archive" else 0)
    if warned:
        assert warned[0].endswith(
            f"in {path} lists no layers; reading manifest.json instead"
        )


def test_empty_oci_layers_without_fallback(tmp_path: Path) -> None:
    # Without manifest.json, the config's 2 diff_ids contradict the 0 layers.
    members = oci_archive_members([LOWER, UPPER])
    set_oci_manifest(members, {**oci_manifest_of(members), "layers": []})
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match="lists 2 diff_ids but the manifest lists 0"):
        analyze_archive(path)


def test_zstd_several_frames(tmp_path: Path) -> None:
    blob = zstd_frames(UPPER, 3)
    # The first frame alone holds only a third of the tar.
    assert len(zstandard.ZstdDecompressor().decompress(blob)) < len(UPPER)
    members = docker_archive_members([LOWER, UPPER])
    members[f"{1:064x}/layer.tar"] = blob
    path = write_tar(tmp_path / "image.tar", members)
    assert_sample(analyze_archive(path))
    assert visible(path) == EXPECTED_VISIBLE


def test_gzip_several_members(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER])
    members[f"{0:064x}/layer.tar"] = gzip_members(LOWER, 4)
    path = write_tar(tmp_path / "image.tar", members)
    assert_sample(analyze_archive(path))


def test_gzip_zero_padding(tmp_path: Path) -> None:
    # Python's gzip module skips zero bytes after the last member.
    members = docker_archive_members([LOWER, UPPER])
    members[f"{0:064x}/layer.tar"] = compress(LOWER, "gzip") + bytes(1000)
    assert_sample(analyze_archive(write_tar(tmp_path / "image.tar", members)))


def _relabel_layers(members: dict[str, bytes], media_types: list[str]) -> None:
    manifest = oci_manifest_of(members)
    for descriptor, media_type in zip(manifest["layers"], media_types, strict=True):
        descriptor["mediaType"] = media_type
    set_oci_manifest(members, manifest)


def test_media_type_contradicts_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Both descriptors name gzip, but the lower blob is zstd and the upper one a
    # plain tar. The digests prove the content, so the content decides.
    members = oci_archive_members([LOWER, UPPER])
    manifest = oci_manifest_of(members)
    lower_blob = compress(LOWER, "zstd")
    lower_path = "blobs/sha256/" + sha256(lower_blob)[7:]
    members[lower_path] = lower_blob
    manifest["layers"][0].update(
        digest=sha256(lower_blob),
        size=len(lower_blob),
        mediaType="application/vnd.oci.image.layer.v1.tar+gzip",
    )
    manifest["layers"][1]["mediaType"] = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    set_oci_manifest(members, manifest)
    path = write_tar(tmp_path / "image.tar", members)
    with caplog.at_level(logging.WARNING, logger="hyperlane.images.archive"):
        result = analyze_archive(path)
    assert_sample(result)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    upper_path = "blobs/sha256/" + sha256(UPPER)[7:]
    assert warned == [
        f"layer {lower_path} in {path} has media type "
        "application/vnd.oci.image.layer.v1.tar+gzip, which names gzip, but its "
        "content has zstd; reading it by its content",
        f"layer {upper_path} in {path} has media type "
        "application/vnd.docker.image.rootfs.diff.tar.gzip, which names gzip, but "
        "its content has no compression; reading it by its content",
    ]


def test_media_type_matches_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = oci_archive_members([LOWER, UPPER], "zstd")
    _relabel_layers(members, ["application/vnd.oci.image.layer.v1.tar+zstd"] * 2)
    path = write_tar(tmp_path / "image.tar", members)
    with caplog.at_level(logging.WARNING, logger="hyperlane.images.archive"):
        assert_sample(analyze_archive(path))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_encrypted_layer(tmp_path: Path) -> None:
    members = oci_archive_members([LOWER, UPPER], "gzip")
    _relabel_layers(
        members,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        ],
    )
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match="is encrypted") as caught:
        analyze_archive(path)
    message = str(caught.value)
    assert str(path) in message
    assert sha256(compress(UPPER, "gzip"))[7:] in message
    assert "decrypt the image first" in message


def test_config_fields(tmp_path: Path) -> None:
    extra: dict[str, Any] = {
        "config": {
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Cmd": ["serve"],
            "Entrypoint": ["/bin/app"],
            "Env": ["A=1", "B=2"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
        },
        "history": [
            {"created_by": "ENV A=1", "empty_layer": True},
            {"created_by": "COPY tool"},
            {"created_by": "EXPOSE 8080", "empty_layer": True},
            {"created_by": "COPY conf"},
        ],
    }
    config = image_config([LOWER, UPPER], extra)
    members = docker_archive_members([LOWER, UPPER], config=config)
    result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert result.config.exposed_ports == ["53/udp", "8080/tcp"]
    assert result.config.cmd == ["serve"]
    assert result.config.entrypoint == ["/bin/app"]
    assert result.config.env == ["A=1", "B=2"]
    assert result.config.working_dir == "/srv"
    assert result.config.user == "1000:1000"
    assert [layer.created_by for layer in result.layers] == ["COPY tool", "COPY conf"]
    assert result.image_id == sha256(config)
    assert result.config_bytes == len(config)
    assert result.os == "linux"
    assert result.architecture == "amd64"
    assert result.created == "2026-01-02T03:04:05Z"


def test_to_dict_json(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER])
    result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    document = json.loads(json.dumps(result.to_dict()))
    assert document["layers"][1]["files_modified"] == 1
    assert document["config"]["env"] == ["PATH=/bin"]
    assert document["hidden_bytes"] == 19
    assert document["sparse_files"] == []


def test_first_manifest_entry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = docker_archive_members([LOWER], repo_tags=["example.test/first:1"])
    second = docker_archive_members([UPPER], repo_tags=["example.test/second:1"])
    entries = json.loads(first["manifest.json"]) + json.loads(second["manifest.json"])
    members = {**second, **first, "manifest.json": json.dumps(entries).encode()}
    with caplog.at_level(logging.WARNING, logger="hyperlane.images.archive"):
        result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert result.reference == "example.test/first:1"
    assert len(result.layers) == 1
    assert (
        "contains 2 images; analysing the first (example.test/first:1)" in caplog.text
    )
    assert "and not example.test/second:1" in caplog.text


def platform_layout(tmp_path: Path) -> Path:
    """Write an OCI layout whose index lists arm64 first, then amd64."""
    arm_layer = layer_tar([file("arm", b"a" * 3)])
    amd_layer = layer_tar([file("amd", b"b" * 7)])
    arm_members, arm = oci_members([arm_layer])
    amd_members, amd = oci_members([amd_layer])
    arm["platform"] = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    amd["platform"] = {"os": "linux", "architecture": "amd64"}
    index = oci_index([arm, amd])
    members = {**arm_members, **amd_members}
    members["blobs/sha256/" + sha256(index)[7:]] = index
    outer = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha256(index),
        "size": len(index),
    }
    members["index.json"] = oci_index([outer])
    members["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    return write_directory(tmp_path / "layout", members)


def test_index_prefers_amd64(tmp_path: Path) -> None:
    result = analyze_archive(platform_layout(tmp_path))
    assert result.total_size_bytes == 7


def test_index_platform_chosen(tmp_path: Path) -> None:
    result = analyze_archive(platform_layout(tmp_path), platform="linux/arm64")
    assert result.total_size_bytes == 3


def test_index_platform_missing(tmp_path: Path) -> None:
    root = platform_layout(tmp_path)
    with pytest.raises(UsageError) as caught:
        analyze_archive(root, platform="linux/s390x")
    assert str(caught.value) == (
        f"{str(root)!r} has no image for platform 'linux/s390x'; pass one of the "
        "platforms it has: linux/amd64, linux/arm64/v8"
    )


# Listed out of order and with an attestation, so that a pick by position fails.
PLATFORM_IMAGES = [
    ({"os": "linux", "architecture": "arm", "variant": "v6"}, "armv6", 6),
    ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "arm64", 8),
    ({"os": "unknown", "architecture": "unknown"}, "attestation", 1),
    ({"os": "linux", "architecture": "amd64"}, "amd64", 64),
    ({"os": "linux", "architecture": "arm", "variant": "v7"}, "armv7", 7),
]


def multi_platform_layout(tmp_path: Path) -> Path:
    images = [
        (platform, layer_tar([file(name, name[0].encode() * size)]))
        for platform, name, size in PLATFORM_IMAGES
    ]
    return write_directory(tmp_path / "layout", platform_index_members(images))


@pytest.mark.parametrize(
    ("platform", "name", "size", "architecture"),
    [
        (None, "amd64", 64, "amd64"),
        ("linux/amd64", "amd64", 64, "amd64"),
        ("linux/x86_64", "amd64", 64, "amd64"),
        ("linux/arm64", "arm64", 8, "arm64"),
        ("linux/arm64/v8", "arm64", 8, "arm64"),
        ("linux/aarch64", "arm64", 8, "arm64"),
        ("linux/arm/v7", "armv7", 7, "arm"),
        ("linux/arm", "armv7", 7, "arm"),
        ("linux/armhf", "armv7", 7, "arm"),
        ("linux/arm/v6", "armv6", 6, "arm"),
        ("LINUX/ARM/V6", "armv6", 6, "arm"),
    ],
)
def test_platform_selects_image(
    tmp_path: Path, platform: str | None, name: str, size: int, architecture: str
) -> None:
    root = multi_platform_layout(tmp_path)
    result = analyze_archive(root, platform=platform)
    assert result.architecture == architecture
    assert result.files_total == 1
    assert result.total_size_bytes == size
    assert result.visible_bytes == size
    assert result.hidden_bytes == 0
    assert [(layer.files_added, layer.files_removed) for layer in result.layers] == [
        (1, 0)
    ]
    assert visible(root, platform=platform) == [(name, "file", 0, size)]


@pytest.mark.parametrize("platform", ["linux/s390x", "linux/arm/v5", "windows/amd64"])
def test_platform_not_in_index(tmp_path: Path, platform: str) -> None:
    root = multi_platform_layout(tmp_path)
    with pytest.raises(UsageError) as caught:
        analyze_archive(root, platform=platform)
    # The attestation is not an image that one could ask for, so it is not listed.
    assert str(caught.value) == (
        f"{str(root)!r} has no image for platform {platform!r}; pass one of the "
        "platforms it has: linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8"
    )


@pytest.mark.parametrize("platform", ["arm64", "linux/", "/amd64", "a/b/c/d", ""])
def test_platform_invalid_text(tmp_path: Path, platform: str) -> None:
    with pytest.raises(UsageError) as caught:
        analyze_archive(multi_platform_layout(tmp_path), platform=platform)
    assert str(caught.value).startswith(
        f"platform {platform!r} is not OS/ARCHITECTURE[/VARIANT]"
    )


def _docker_archive_for(tmp_path: Path, config_platform: dict[str, str]) -> Path:
    config = image_config([LOWER, UPPER], config_platform)
    members = docker_archive_members([LOWER, UPPER], config=config)
    return write_tar(tmp_path / "image.tar", members)


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/x86_64"])
def test_docker_archive_platform_matches(tmp_path: Path, platform: str) -> None:
    path = _docker_archive_for(tmp_path, {"os": "linux", "architecture": "amd64"})
    assert_sample(analyze_archive(path, platform=platform))


def test_docker_archive_platform_differs(tmp_path: Path) -> None:
    path = _docker_archive_for(tmp_path, {"os": "linux", "architecture": "amd64"})
    with pytest.raises(UsageError) as caught:
        analyze_archive(path, platform="linux/arm64")
    assert str(caught.value) == (
        f"{str(path)!r} contains an image for linux/amd64, not for platform "
        "'linux/arm64'; pass platform linux/amd64 or an archive of the linux/arm64 "
        "image"
    )


def test_docker_archive_variant(tmp_path: Path) -> None:
    path = _docker_archive_for(
        tmp_path, {"os": "linux", "architecture": "arm", "variant": "v7"}
    )
    assert_sample(analyze_archive(path, platform="linux/arm"))
    with pytest.raises(UsageError, match="contains an image for linux/arm/v7"):
        analyze_archive(path, platform="linux/arm/v6")


def test_index_without_platforms(tmp_path: Path) -> None:
    # An index whose one descriptor has no platform field: the config decides.
    path = write_tar(tmp_path / "image.tar", oci_archive_members([LOWER, UPPER]))
    assert_sample(analyze_archive(path, platform="linux/amd64"))
    with pytest.raises(UsageError, match="contains an image for linux/amd64"):
        analyze_archive(path, platform="linux/arm64")


def test_diff_id_mismatch(tmp_path: Path) -> None:
    config = image_config([LOWER, layer_tar([file("other", b"o")])])
    members = docker_archive_members([LOWER, UPPER], config=config)
    with pytest.raises(ImageInvalid, match="diff_id"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


def test_diff_id_count_mismatch(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER], config=image_config([LOWER]))
    with pytest.raises(ImageInvalid, match="diff_ids"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


def test_blob_digest_mismatch(tmp_path: Path) -> None:
    members = oci_archive_members([LOWER, UPPER], "gzip")
    name = "blobs/sha256/" + sha256(compress(UPPER, "gzip"))[7:]
    # Same uncompressed tar, so only the blob digest can catch the change.
    members[name] = compress(UPPER, "zstd")
    with pytest.raises(ImageInvalid, match="blob digest"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


def test_config_digest_mismatch(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER])
    config_name = next(
        name for name in members if name.endswith(".json") and name != "manifest.json"
    )
    members[config_name] = members[config_name].replace(b"amd64", b"arm64")
    with pytest.raises(ImageInvalid, match="digest"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


def test_missing_blob(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER, UPPER])
    del members[f"{1:064x}/layer.tar"]
    with pytest.raises(ImageInvalid, match="missing") as caught:
        analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert "image.tar" in str(caught.value)


def test_manifest_path_escape(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER])
    manifest = json.loads(members["manifest.json"])
    manifest[0]["Layers"] = ["../outside/layer.tar"]
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(ImageInvalid, match="outside the archive root"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


@pytest.mark.parametrize("keep_fraction", [0.3, 0.6, 0.9])
def test_truncated_archive(tmp_path: Path, keep_fraction: float) -> None:
    big = layer_tar([file("blob", bytes(range(256)) * 400)])
    path = write_tar(tmp_path / "image.tar", docker_archive_members([LOWER, big]))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path, kind="docker-archive")
    assert "image.tar" in str(caught.value)


def test_corrupt_gzip_layer(tmp_path: Path) -> None:
    members = oci_archive_members([LOWER, UPPER], "gzip")
    name = "blobs/sha256/" + sha256(compress(LOWER, "gzip"))[7:]
    blob = bytearray(members[name])
    blob[20:40] = b"\xff" * 20
    members[name] = bytes(blob)
    with pytest.raises(ImageInvalid, match="cannot be read"):
        analyze_archive(write_tar(tmp_path / "image.tar", members))


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0xFF])


@pytest.mark.parametrize(
    ("compression", "damage", "expected"),
    [
        # Deflate blocks overwritten: zlib rejects the data.
        ("gzip", lambda blob: blob[:20] + b"\xff" * 20 + blob[40:], "gzip"),
        # The length in the trailer is wrong.
        ("gzip", _flip_last_byte, "gzip"),
        # The stream stops before its end-of-stream marker.
        ("gzip", lambda blob: blob[: len(blob) // 2], "gzip"),
        # A zstd frame whose content is overwritten.
        ("zstd", lambda blob: blob[:12] + b"\xff" * 24 + blob[36:], "zstd"),
    ],
    ids=["gzip-data", "gzip-trailer", "gzip-cut", "zstd-data"],
)
def test_damaged_compression_named(
    tmp_path: Path,
    compression: str,
    damage: Callable[[bytes], bytes],
    expected: str,
) -> None:
    members = oci_archive_members([LOWER, UPPER], compression)
    name = "blobs/sha256/" + sha256(compress(LOWER, compression))[7:]
    members[name] = damage(members[name])
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(write_tar(tmp_path / "image.tar", members))
    message = str(caught.value)
    assert f"its {expected} stream is invalid" in message
    assert name in message
    assert message.endswith("export the image again")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"not an archive" * 100, "invalid header"),
        (b"\x1f\x8b" + b"junk" * 100, "gz"),
        (compress(b"x" * 1024, "zstd"), "zstd"),
    ],
    ids=["zero-bytes", "text", "bad-gzip", "zstd"],
)
@pytest.mark.parametrize("kind", [None, "docker-archive", "oci-archive"])
def test_not_a_tar(
    tmp_path: Path, content: bytes, reason: str, kind: str | None
) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(content)
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path, kind=kind)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{str(path)!r} is not a tar archive")
    assert reason in message
    assert "docker save" in message


def test_detect_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"")
    with pytest.raises(ImageInvalid, match=r"not a tar archive.*empty") as caught:
        detect_layout(path)
    assert "\n" not in str(caught.value)


def test_empty_tar_as_docker(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "x.tar", {})
    with pytest.raises(ImageInvalid, match=r"no manifest\.json and no index\.json"):
        analyze_archive(path, kind="docker-archive")


def test_oci_kind_for_docker(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "good.tar", docker_archive_members([LOWER]))
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path, kind="oci-archive")
    message = str(caught.value)
    assert message.startswith(f"{str(path)!r} is not an oci-archive")
    assert "has no index.json but has manifest.json" in message
    assert f"pass docker-archive:{path} or the bare path" in message


def test_docker_kind_for_oci(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "oci.tar", oci_archive_members([LOWER]))
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path, kind="docker-archive")
    message = str(caught.value)
    assert message.startswith(f"{str(path)!r} is not a docker-archive")
    assert "has no manifest.json but has index.json" in message
    assert f"pass oci-archive:{path} or the bare path" in message


def test_oci_kind_for_file(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "oci.tar", oci_archive_members([LOWER]))
    with pytest.raises(ImageInvalid, match="is a file, not an OCI layout directory"):
        analyze_archive(path, kind="oci")


def test_tar_kind_for_directory(tmp_path: Path) -> None:
    root = write_directory(tmp_path / "layout", oci_archive_members([LOWER]))
    with pytest.raises(ImageInvalid, match=re.escape(f"pass oci:{root}")):
        analyze_archive(root, kind="oci-archive")


def test_directory_without_index(tmp_path: Path) -> None:
    members = oci_archive_members([LOWER])
    del members["index.json"]
    root = write_directory(tmp_path / "layout", members)
    with pytest.raises(ImageInvalid, match=r"has no index\.json"):
        analyze_archive(root, kind="oci")


def _set_manifest(members: dict[str, bytes], document: object) -> None:
    members["manifest.json"] = json.dumps(document).encode()


def _edit_entry(members: dict[str, bytes], key: str, value: object) -> None:
    entries = json.loads(members["manifest.json"])
    if value is None:
        del entries[0][key]
    else:
        entries[0][key] = value
    _set_manifest(members, entries)


DOCKER_MANIFEST_CASES: list[tuple[str, Callable[[dict[str, bytes]], None], str]] = [
    ("object", lambda m: _set_manifest(m, {"Config": "c"}), "expected a non-empty"),
    ("empty-list", lambda m: _set_manifest(m, []), "expected a non-empty"),
    ("string-entry", lambda m: _set_manifest(m, ["x"]), "expected an object"),
    ("no-config", lambda m: _edit_entry(m, "Config", None), "no Config key"),
    ("no-layers", lambda m: _edit_entry(m, "Layers", None), "no Layers key"),
    ("layers-string", lambda m: _edit_entry(m, "Layers", "a"), "Layers 'a'"),
    ("config-number", lambda m: _edit_entry(m, "Config", 5), "config path 5"),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [case[1:] for case in DOCKER_MANIFEST_CASES],
    ids=[case[0] for case in DOCKER_MANIFEST_CASES],
)
def test_docker_manifest_invalid(
    tmp_path: Path, change: Callable[[dict[str, bytes]], None], expected: str
) -> None:
    members = docker_archive_members([LOWER])
    change(members)
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match=expected) as caught:
        analyze_archive(path)
    assert str(path) in str(caught.value)


def test_docker_tag_not_string(tmp_path: Path) -> None:
    members = docker_archive_members([LOWER])
    _edit_entry(members, "RepoTags", [7])
    result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert result.reference is None


def _oci_with_manifest(document: object) -> dict[str, bytes]:
    """Return an oci-archive whose index names DOCUMENT as its manifest."""
    members = oci_archive_members([LOWER])
    blob = json.dumps(document).encode()
    members["blobs/sha256/" + sha256(blob)[7:]] = blob
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(blob),
        "size": len(blob),
    }
    members["index.json"] = oci_index([descriptor])
    return members


def _oci_manifest(members: dict[str, bytes]) -> dict[str, Any]:
    index = json.loads(members["index.json"])
    digest = index["manifests"][0]["digest"]
    manifest: dict[str, Any] = json.loads(members["blobs/sha256/" + digest[7:]])
    return manifest


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


VALID_MANIFEST = _oci_manifest(oci_archive_members([LOWER]))
OCI_CASES: list[tuple[str, dict[str, bytes], str]] = [
    (
        "index-list",
        {**oci_archive_members([LOWER]), "index.json": b"[]"},
        r"'index\.json' in .* is a JSON list, expected an object",
    ),
    (
        "manifests-string",
        {**oci_archive_members([LOWER]), "index.json": b'{"manifests": "x"}'},
        "no manifests list",
    ),
    ("manifest-list", _oci_with_manifest([1]), "is a JSON list, expected an object"),
    (
        "no-config",
        _oci_with_manifest(_without(VALID_MANIFEST, "config")),
        "has no config key",
    ),
    (
        "no-layers",
        _oci_with_manifest(_without(VALID_MANIFEST, "layers")),
        "has no layers key",
    ),
    (
        "layers-number",
        _oci_with_manifest({**VALID_MANIFEST, "layers": 3}),
        "has layers 3, expected a list",
    ),
]


@pytest.mark.parametrize(
    ("members", "expected"),
    [case[1:] for case in OCI_CASES],
    ids=[case[0] for case in OCI_CASES],
)
def test_oci_manifest_invalid(
    tmp_path: Path, members: dict[str, bytes], expected: str
) -> None:
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match=expected) as caught:
        analyze_archive(path)
    assert str(path) in str(caught.value)


def _config_with(**fields: object) -> bytes:
    config = json.loads(image_config([LOWER]))
    for key, value in fields.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    return json.dumps(config).encode()


CONFIG_CASES: list[tuple[str, bytes, str]] = [
    ("json-list", b"[]", "is list, expected a JSON object"),
    ("no-rootfs", _config_with(rootfs=None), r"no rootfs\.diff_ids"),
    ("rootfs-list", _config_with(rootfs=[]), r"no rootfs\.diff_ids"),
    (
        "diff-ids-string",
        _config_with(rootfs={"diff_ids": "x"}),
        r"rootfs\.diff_ids 'x', expected a list",
    ),
    (
        "settings-list",
        _config_with(config=[]),
        "has config",
    ),
    (
        "ports-number",
        _config_with(config={"ExposedPorts": 80}),
        r"config\.ExposedPorts 80",
    ),
    ("env-number", _config_with(config={"Env": 1}), r"config\.Env 1"),
    ("cmd-number", _config_with(config={"Cmd": 1}), r"config\.Cmd 1"),
    ("history-number", _config_with(history=2), "history 2"),
    ("history-entry", _config_with(history=["x"]), r"history\[0\] 'x'"),
    (
        "created-by-number",
        _config_with(history=[{"created_by": 4}]),
        r"history\[0\]\.created_by 4",
    ),
    ("os-number", _config_with(os=9), "os 9"),
]


@pytest.mark.parametrize(
    ("config", "expected"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_config_invalid(tmp_path: Path, config: bytes, expected: str) -> None:
    members = docker_archive_members([LOWER], config=config)
    path = write_tar(tmp_path / "image.tar", members)
    with pytest.raises(ImageInvalid, match=expected) as caught:
        analyze_archive(path)
    message = str(caught.value)
    assert str(path) in message
    assert sha256(config)[7:] + ".json" in message


def test_config_string_cmd(tmp_path: Path) -> None:
    # Docker decodes a single string as a one-element Cmd.
    config = _config_with(config={"Cmd": "serve", "Entrypoint": None})
    members = docker_archive_members([LOWER], config=config)
    result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert result.config.cmd == ["serve"]
    assert result.config.entrypoint is None


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="engine"):
        analyze_archive(tmp_path, kind="engine")


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.tar"
    with pytest.raises(UsageError, match=re.escape(f"file {str(path)!r} not found")):
        analyze_archive(path, kind="docker-archive")


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(
        UsageError, match=re.escape(f"directory {str(path)!r} not found")
    ):
        analyze_archive(path, kind="oci")


def test_detect_layouts(tmp_path: Path) -> None:
    docker = write_tar(tmp_path / "docker.tar", docker_archive_members([LOWER]))
    oci = write_tar(tmp_path / "oci.tar", oci_archive_members([LOWER]))
    layout = write_directory(tmp_path / "layout", oci_archive_members([LOWER]))
    assert detect_layout(docker) == "docker-archive"
    assert detect_layout(oci) == "oci-archive"
    assert detect_layout(layout) == "oci"


def test_detect_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageInvalid, match="oci-layout"):
        detect_layout(tmp_path)


def test_detect_other_tar(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "other.tar", {"readme": b"hello"})
    with pytest.raises(ImageInvalid, match=r"manifest\.json"):
        detect_layout(path)


LOWER_MEMBER = f"{0:064x}/layer.tar"
UPPER_MEMBER = f"{1:064x}/layer.tar"
FIX_EXPORT = "export the image again"
FIX_REBUILD = "rebuild the image"


def _member_offsets(path: Path, name: str) -> tuple[int, int, int]:
    """Return the header offset, data offset and size of member NAME of PATH."""
    with tarfile.open(path) as archive:
        member = archive.getmember(name)
    return member.offset, member.offset_data, member.size


def _sample_archive(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "image.tar", docker_archive_members([LOWER, UPPER]))


def _cut_in_layer(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _sample_archive(tmp_path)
    _, data_offset, size = _member_offsets(path, UPPER_MEMBER)
    path.write_bytes(path.read_bytes()[: data_offset + size // 2])
    return path, [f"is truncated or corrupt: it ends inside member {UPPER_MEMBER!r}"]


def _cut_in_manifest(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _sample_archive(tmp_path)
    _, data_offset, size = _member_offsets(path, "manifest.json")
    path.write_bytes(path.read_bytes()[: data_offset + size // 2])
    return path, ["is truncated or corrupt: it ends inside member 'manifest.json'"]


def _cut_in_header(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _sample_archive(tmp_path)
    header_offset, _, _ = _member_offsets(path, UPPER_MEMBER)
    path.write_bytes(path.read_bytes()[: header_offset + 100])
    return path, [
        f"is truncated: it ends after member {LOWER_MEMBER!r} without the tar "
        "end-of-archive marker"
    ]


def _cut_before_end_marker(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _sample_archive(tmp_path)
    _, data_offset, size = _member_offsets(path, "manifest.json")
    path.write_bytes(path.read_bytes()[: data_offset + -(-size // 512) * 512])
    return path, ["is truncated: it ends after member 'manifest.json' without"]


def _blob_digest_differs(tmp_path: Path) -> tuple[Path, list[str]]:
    members = oci_archive_members([LOWER, UPPER], "gzip")
    name = "blobs/sha256/" + sha256(compress(UPPER, "gzip"))[7:]
    # The same tar compressed otherwise, so only the blob digest can catch it.
    members[name] = compress(UPPER, "zstd")
    path = write_tar(tmp_path / "image.tar", members)
    return path, [f"layer {name!r}", "has blob digest", "the archive is corrupt"]


def _diff_id_differs(tmp_path: Path) -> tuple[Path, list[str]]:
    config = image_config([LOWER, layer_tar([file("other", b"o")])])
    members = docker_archive_members([LOWER, UPPER], config=config)
    path = write_tar(tmp_path / "image.tar", members)
    return path, [f"layer {UPPER_MEMBER!r}", f"has diff_id {sha256(UPPER)!r}"]


def _docker_blob_missing(tmp_path: Path) -> tuple[Path, list[str]]:
    members = docker_archive_members([LOWER, UPPER])
    del members[UPPER_MEMBER]
    path = write_tar(tmp_path / "image.tar", members)
    return path, [f"layer {UPPER_MEMBER!r} is missing from"]


def _oci_blob_missing(tmp_path: Path) -> tuple[Path, list[str]]:
    members = oci_archive_members([LOWER, UPPER])
    name = "blobs/sha256/" + sha256(UPPER)[7:]
    del members[name]
    path = write_tar(tmp_path / "image.tar", members)
    return path, [f"layer {name!r} is missing from"]


def _escaping_layer(tmp_path: Path, entry_layer: bytes) -> Path:
    members = docker_archive_members([LOWER, entry_layer])
    return write_tar(tmp_path / "image.tar", members)


def _member_escapes(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _escaping_layer(tmp_path, layer_tar([file("../evil", b"e")]))
    return path, [
        f"layer {UPPER_MEMBER!r}",
        "has a path outside the root: '../evil'; the archive is unsafe to unpack",
        FIX_REBUILD,
    ]


def _absolute_symlink_escapes(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _escaping_layer(tmp_path, layer_tar([symlink("link", "/../etc/passwd")]))
    return path, [
        f"layer {UPPER_MEMBER!r}",
        "has a path outside the root: 'symlink link -> /../etc/passwd'",
        FIX_REBUILD,
    ]


def _relative_symlink_escapes(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _escaping_layer(tmp_path, layer_tar([symlink("usr/link", "../../etc")]))
    return path, [
        f"layer {UPPER_MEMBER!r}",
        "has a path outside the root: 'symlink usr/link -> ../../etc'",
        FIX_REBUILD,
    ]


def _hardlink_escapes(tmp_path: Path) -> tuple[Path, list[str]]:
    path = _escaping_layer(tmp_path, layer_tar([hardlink("h", "/../bin/tool")]))
    return path, [
        f"layer {UPPER_MEMBER!r}",
        "has a path outside the root: 'hard link h -> /../bin/tool'",
        FIX_REBUILD,
    ]


def _gzip_trailing_garbage(tmp_path: Path) -> tuple[Path, list[str]]:
    members = docker_archive_members([LOWER, UPPER])
    members[UPPER_MEMBER] = compress(UPPER, "gzip") + b"garbage after the stream"
    path = write_tar(tmp_path / "image.tar", members)
    return path, [f"layer {UPPER_MEMBER!r}", "cannot be read: "]


BAD_INPUTS: list[tuple[str, Callable[[Path], tuple[Path, list[str]]], str]] = [
    ("cut-in-layer", _cut_in_layer, FIX_EXPORT),
    ("cut-in-manifest", _cut_in_manifest, FIX_EXPORT),
    ("cut-in-header", _cut_in_header, FIX_EXPORT),
    ("cut-before-end-marker", _cut_before_end_marker, FIX_EXPORT),
    ("blob-digest", _blob_digest_differs, FIX_EXPORT),
    ("diff-id", _diff_id_differs, FIX_EXPORT),
    ("docker-blob-missing", _docker_blob_missing, FIX_EXPORT),
    ("oci-blob-missing", _oci_blob_missing, FIX_EXPORT),
    ("member-escapes", _member_escapes, FIX_REBUILD),
    ("absolute-symlink-escapes", _absolute_symlink_escapes, FIX_REBUILD),
    ("relative-symlink-escapes", _relative_symlink_escapes, FIX_REBUILD),
    ("hardlink-escapes", _hardlink_escapes, FIX_REBUILD),
    ("gzip-trailing-garbage", _gzip_trailing_garbage, FIX_EXPORT),
]


@pytest.mark.parametrize(
    ("build", "fix"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_message(
    tmp_path: Path, build: Callable[[Path], tuple[Path, list[str]]], fix: str
) -> None:
    path, fragments = build(tmp_path)
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path)
    message = str(caught.value)
    assert repr(str(path)) in message
    for fragment in fragments:
        assert fragment in message
    assert message.endswith(fix)
    assert "\n" not in message


def _run_image_json(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYPERLANE, "image", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "build", [case[1] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_cli_bad_input(
    tmp_path: Path, build: Callable[[Path], tuple[Path, list[str]]]
) -> None:
    path, fragments = build(tmp_path)
    result = _run_image_json(path)
    assert result.returncode == ExitCode.IMAGE_INVALID, result.stderr
    assert result.stdout == ""
    error_line = result.stderr.splitlines()[-1]
    assert error_line.startswith("hyperlane: error: ")
    assert str(path) in error_line
    for fragment in fragments:
        assert fragment in error_line


def test_cli_good_input(tmp_path: Path) -> None:
    # The control case for test_cli_bad_input: the same command prints the JSON.
    result = _run_image_json(_sample_archive(tmp_path))
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert json.loads(result.stdout)["image"]["files_total"] == 3


def test_detect_truncated(tmp_path: Path) -> None:
    # Cut inside manifest.json's header: detection reports the cut, not a tar
    # without manifest.json.
    path = _sample_archive(tmp_path)
    header_offset, _, _ = _member_offsets(path, "manifest.json")
    path.write_bytes(path.read_bytes()[: header_offset + 10])
    with pytest.raises(ImageInvalid, match="is truncated: it ends after member"):
        detect_layout(path)


def test_invalid_header_mid_archive(tmp_path: Path) -> None:
    path = _sample_archive(tmp_path)
    header_offset, _, _ = _member_offsets(path, UPPER_MEMBER)
    data = bytearray(path.read_bytes())
    data[header_offset : header_offset + 512] = b"\xff" * 512
    path.write_bytes(bytes(data))
    with pytest.raises(ImageInvalid) as caught:
        analyze_archive(path, kind="docker-archive")
    assert str(caught.value) == (
        f"{str(path)!r} has an invalid tar header at byte {header_offset}, after "
        f"member {LOWER_MEMBER!r}; the archive is corrupt, export the image again"
    )


def test_gc_state_restored(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "image.tar", docker_archive_members([LOWER, UPPER]))
    broken = write_tar(
        tmp_path / "broken.tar", docker_archive_members([LOWER, UPPER[:700]])
    )
    assert gc.isenabled()
    assert_sample(analyze_archive(path))
    assert gc.isenabled()
    with pytest.raises(ImageInvalid):
        analyze_archive(broken)
    assert gc.isenabled()
    gc.disable()
    try:
        assert_sample(analyze_archive(path))
        assert not gc.isenabled()
    finally:
        gc.enable()
