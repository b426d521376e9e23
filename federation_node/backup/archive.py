"""What a node's backup holds, how it is written, and how it is put back.

A backup is a folder of two files:

    manifest.json   plain, for the operator: node id, when, database engine, log size and last
                    cosigned checkpoint at backup time, and the size and SHA-256 of backup.enc.
                    Informational only: restore trusts the copy inside the encrypted archive.
    backup.enc      a gzipped tar archive, encrypted under the passphrase (`encryption`):
                      manifest.json                       the same manifest, authenticated
                      database.sqlite | database.pgdump   the database snapshot (`snapshot`)
                      data/keys/...                       private keys, certificate, successors
                      data/directory.json, data/root-chain.jsonl
                      config/<name>                       node.toml, the policy file, trust files

Not in a backup: `replica.id` (a replica's own name: a restored copy running elsewhere must not
share it), the ready file and logs.

Restore (the node stopped) puts the database back, then the key files and the directory cache;
configuration and trust files only where missing, since the operator's current ones win. It then
migrates the database to this version's schema, releases every outbox lease, and marks the log
"awaiting the witness" (`log_store.mark_restored`): the node issues no attestation until the
registry witness has confirmed that it cosigned nothing beyond the restored log, or the missing
entries are recovered (`tlog.recovery`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlmodel import Session

from federation.database import reader
from federation.errors import InvalidInputError, PreconditionError
from federation_node.backup import snapshot
from federation_node.backup.encryption import OpeningReader, SealingWriter
from federation_node.config import NodeConfig
from federation_node.keystore import KeyPaths
from federation_node.store import db, log_store, outbox

MANIFEST = "manifest.json"
ARCHIVE = "backup.enc"
FORMAT = "certfed-node-backup-v1"
READY_FILE = "node.ready.json"
# gzip level 6: most of level 9's gain on database pages, in a fraction of its time.
COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class Manifest:
    format: str
    node_id: str
    created_at: str
    database: str
    log_size: int
    cosigned_size: int
    # Archive member -> where the configuration names the file (config/...), for restore.
    config_files: dict[str, str]


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    manifest: Manifest
    archive_bytes: int
    archive_sha256: str
    seconds: float


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    seconds: float


class _Hashing:
    """A file writer that also hashes and counts what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def _config_files(config: NodeConfig, config_path: Path) -> dict[str, Path]:
    named = {
        "config/node.toml": config_path,
        "config/policy.toml": config.policy_file,
        "config/root.pub": config.root_public_key,
        "config/ca.pem": config.ca_certificate,
        "config/witness.vkey": config.witness_public_key,
    }
    return {member: path for member, path in named.items() if path.is_file()}


def _data_files(config: NodeConfig) -> dict[str, Path]:
    paths = KeyPaths(config.data_dir)
    files = {
        f"data/keys/{path.relative_to(config.data_dir / 'keys').as_posix()}": path
        for path in sorted((config.data_dir / "keys").rglob("*"))
        if path.is_file()
    }
    for path in (paths.directory_cache, paths.root_chain):
        if path.is_file():
            files[f"data/{path.name}"] = path
    return files


def create_backup(
    config: NodeConfig, config_path: Path, folder: Path, passphrase: str
) -> BackupResult:
    """Write a backup of the node into `folder` (created if needed; refused if it holds one)."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / ARCHIVE).exists():
        raise PreconditionError(f"{folder} already holds a backup; give a new folder")
    url = config.effective_database_url
    engine = db.create_engine_for(url)
    try:
        with Session(reader(engine)) as session:
            log_size = log_store.size(session)
            latest = log_store.latest_checkpoint(session)
    finally:
        engine.dispose()
    config_files = _config_files(config, config_path)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".backup-") as work:
        taken = snapshot.take(url, Path(work))
        manifest = Manifest(
            format=FORMAT,
            node_id=config.node_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            database=taken.engine,
            log_size=log_size,
            cosigned_size=0 if latest is None else latest.tree_size,
            config_files={member: str(path) for member, path in config_files.items()},
        )
        manifest_bytes = json.dumps(asdict(manifest), indent=2).encode("utf-8")
        partial = folder / (ARCHIVE + ".partial")
        with partial.open("wb") as raw:
            hashing = _Hashing(raw)
            sealed = SealingWriter(hashing, passphrase)
            with (
                gzip.GzipFile(
                    fileobj=sealed,
                    mode="wb",
                    compresslevel=COMPRESS_LEVEL,
                    mtime=0,
                ) as zipped,
                tarfile.open(fileobj=zipped, mode="w|") as tar,
            ):
                _add_bytes(tar, MANIFEST, manifest_bytes)
                tar.add(taken.path, arcname=taken.path.name)
                for member, path in {**_data_files(config), **config_files}.items():
                    tar.add(path, arcname=member)
            sealed.close()
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(folder / ARCHIVE)
    outer = {
        **asdict(manifest),
        "archive": ARCHIVE,
        "archive_bytes": hashing.size,
        "archive_sha256": hashing.digest.hexdigest(),
    }
    (folder / MANIFEST).write_text(json.dumps(outer, indent=2) + "\n", encoding="utf-8")
    return BackupResult(
        folder,
        manifest,
        hashing.size,
        hashing.digest.hexdigest(),
        time.perf_counter() - started,
    )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _refuse_if_running(config: NodeConfig) -> None:
    ready = config.data_dir / READY_FILE
    try:
        pid = int(json.loads(ready.read_text(encoding="utf-8"))["pid"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise PreconditionError(
        f"node {config.node_id} is running (process {pid}); stop it, and every replica on the "
        "same database, before a restore"
    )


def restore_backup(config: NodeConfig, folder: Path, passphrase: str) -> RestoreResult:
    """Put the backup in `folder` back as this node's database and key files."""
    started = time.perf_counter()
    _refuse_if_running(config)
    archive = folder / ARCHIVE
    if not archive.is_file():
        raise PreconditionError(f"no backup in {folder} (expected {ARCHIVE})")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.data_dir, prefix=".restore-") as work:
        unpacked = Path(work)
        with archive.open("rb") as raw:
            reader = OpeningReader(raw, passphrase)
            with (
                # GzipFile seeks only to rewind, which reading a tar stream never does.
                gzip.GzipFile(fileobj=reader, mode="rb") as zipped,  # type: ignore[call-overload]
                tarfile.open(fileobj=zipped, mode="r|") as tar,
            ):
                tar.extractall(unpacked, filter="data")
        manifest = _read_manifest(unpacked / MANIFEST)
        if manifest.node_id != config.node_id:
            raise InvalidInputError(
                "from", f"the backup is of node {manifest.node_id}, not {config.node_id}"
            )
        database_file = (
            snapshot.SQLITE_FILE if manifest.database == "sqlite" else (snapshot.PGDUMP_FILE)
        )
        url = config.effective_database_url
        snapshot.put_back(snapshot.Snapshot(unpacked / database_file, manifest.database), url)
        _put_files(unpacked / "data", config.data_dir, overwrite=True)
        for member, named in manifest.config_files.items():
            source = unpacked / member
            target = _configured_path(config, member, Path(named))
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    db.migrate(url)
    engine = db.create_engine_for(url)
    try:
        with db.session_scope(engine) as session:
            outbox.release_leases(session, None, datetime.now(UTC))
            log_store.mark_restored(session)
    finally:
        engine.dispose()
    return RestoreResult(manifest, time.perf_counter() - started)


def _configured_path(config: NodeConfig, member: str, named: Path) -> Path:
    """Where this node's configuration wants a configuration file of the backup."""
    current = {
        "config/policy.toml": config.policy_file,
        "config/root.pub": config.root_public_key,
        "config/ca.pem": config.ca_certificate,
        "config/witness.vkey": config.witness_public_key,
    }
    return current.get(member, named)


def _put_files(source: Path, target: Path, *, overwrite: bool) -> None:
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        destination = target / path.relative_to(source)
        if destination.exists() and not overwrite:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(destination.name + ".restoring")
        shutil.copyfile(path, temporary)
        if path.suffix == ".key":
            temporary.chmod(0o600)
        temporary.replace(destination)


def _read_manifest(path: Path) -> Manifest:
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**document)
    except (FileNotFoundError, ValueError, TypeError) as error:
        raise PreconditionError(f"the backup's manifest cannot be read: {error}") from None
    if manifest.format != FORMAT:
        raise PreconditionError(f"the backup is in format {manifest.format!r}, not {FORMAT!r}")
    return manifest
