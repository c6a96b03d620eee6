"""Archive layouts, compression, digests and damaged archives."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hyperlane.errors import ImageInvalid, UsageError
from hyperlane.images import ImageAnalysis, analyze_archive, detect_layout
from tests.unit.images.builders import (
    compress,
    docker_archive_members,
    file,
    image_config,
    layer_tar,
    oci_archive_members,
    oci_index,
    oci_members,
    sha256,
    symlink,
    write_directory,
    write_tar,
)

LOWER = layer_tar([file("bin/tool", b"t" * 40), file("etc/conf", b"c" * 12)])
UPPER = layer_tar([file("etc/conf", b"d" * 5), symlink("bin/alias", "tool")])


def figures(result: ImageAnalysis) -> list[tuple[int, int, int, int, int]]:
    return [
        (
            layer.size_bytes,
            layer.hidden_bytes,
            layer.files_added,
            layer.files_modified,
            layer.entries,
        )
        for layer in result.layers
    ]


# Hand-counted from LOWER and UPPER: 40 + 12 bytes, then 5 bytes and a 4-byte target.
EXPECTED = [(52, 12, 2, 0, 2), (9, 0, 1, 1, 2)]


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_docker_archive_compression(tmp_path: Path, compression: str | None) -> None:
    members = docker_archive_members([LOWER, UPPER], compression)
    path = write_tar(tmp_path / "image.tar", members)
    result = analyze_archive(path)
    assert figures(result) == EXPECTED
    assert result.layers[0].diff_id == sha256(LOWER)
    assert result.layers[0].tar_bytes == len(LOWER)
    assert result.reference == "example.test/app:1"
    assert result.archive_bytes == path.stat().st_size


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_oci_archive_compression(tmp_path: Path, compression: str | None) -> None:
    path = write_tar(
        tmp_path / "image.tar", oci_archive_members([LOWER, UPPER], compression)
    )
    result = analyze_archive(path)
    assert figures(result) == EXPECTED
    assert result.reference == "example.test/app:1"


def test_oci_directory(tmp_path: Path) -> None:
    root = write_directory(tmp_path / "layout", oci_archive_members([LOWER, UPPER]))
    result = analyze_archive(root)
    assert figures(result) == EXPECTED
    blob_bytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert result.archive_bytes == blob_bytes


def test_docker_oci_layout(tmp_path: Path) -> None:
    # Docker 25 and later point manifest.json into blobs/sha256.
    members, _ = oci_members([LOWER, UPPER], "gzip")
    manifest_blob = next(
        data for data in members.values() if b'"schemaVersion"' in data
    )
    manifest = json.loads(manifest_blob)
    entry = {
        "Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
        "RepoTags": ["example.test/app:2"],
        "Layers": ["blobs/sha256/" + d["digest"][7:] for d in manifest["layers"]],
    }
    members["manifest.json"] = json.dumps([entry]).encode()
    path = write_tar(tmp_path / "image.tar", members)
    result = analyze_archive(path)
    assert figures(result) == EXPECTED
    assert result.reference == "example.test/app:2"


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
    assert document["hidden_bytes"] == 12


def test_first_manifest_entry(tmp_path: Path) -> None:
    first = docker_archive_members([LOWER], repo_tags=["example.test/first:1"])
    second = docker_archive_members([UPPER], repo_tags=["example.test/second:1"])
    entries = json.loads(first["manifest.json"]) + json.loads(second["manifest.json"])
    members = {**second, **first, "manifest.json": json.dumps(entries).encode()}
    result = analyze_archive(write_tar(tmp_path / "image.tar", members))
    assert result.reference == "example.test/first:1"
    assert len(result.layers) == 1


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
    with pytest.raises(ImageInvalid, match="s390x"):
        analyze_archive(platform_layout(tmp_path), platform="linux/s390x")


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
