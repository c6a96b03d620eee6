"""File names that are not UTF-8 in JSON documents and terminal summaries."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from hyperlane.report.document import dumps

HYPERLANE = str(Path(sys.executable).parent / "hyperlane")
# Bytes 0xff and 0xe9 are not valid UTF-8 on their own.
NAMES = (b"bad\xffname", b"caf\xe9/x")


def _member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _archive(path: Path) -> None:
    """Write a one-layer docker-archive whose files have non-UTF-8 names."""
    layer = io.BytesIO()
    with tarfile.open(
        fileobj=layer, mode="w", encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for name in NAMES:
            _member(archive, name.decode("utf-8", "surrogateescape"), b"x" * 500)
    layer_bytes = layer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()],
            },
            "history": [{"created_by": "COPY . /"}],
            "config": {},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    with tarfile.open(path, "w") as archive:
        _member(archive, config_name, config)
        _member(archive, "l/layer.tar", layer_bytes)
        _member(archive, "manifest.json", json.dumps(manifest).encode())


def _run(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}
    return subprocess.run(
        [HYPERLANE, *arguments],
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_dumps_escapes_lone_surrogates() -> None:
    name = NAMES[0].decode("utf-8", "surrogateescape")

    text = dumps({"path": name, "plain": "café"})

    text.encode("utf-8")
    assert "\\udcff" in text
    assert "café" in text
    assert json.loads(text)["path"].encode("utf-8", "surrogateescape") == NAMES[0]


def test_image_json_is_valid_utf8_with_such_names(tmp_path: Path) -> None:
    archive = tmp_path / "names.tar"
    _archive(archive)

    finished = _run("image", str(archive), "--json")

    assert finished.returncode == 0, finished.stderr.decode(errors="replace")
    document = json.loads(finished.stdout.decode("utf-8"))
    paths = {item["path"] for item in document["image"]["largest_files"]}
    originals = {path.encode("utf-8", "surrogateescape") for path in paths}
    assert originals == set(NAMES)


def test_image_summary_shows_such_names_escaped(tmp_path: Path) -> None:
    archive = tmp_path / "names.tar"
    _archive(archive)

    finished = _run("image", str(archive))

    assert finished.returncode == 0, finished.stderr.decode(errors="replace")
    assert b"/bad\\udcffname" in finished.stdout
