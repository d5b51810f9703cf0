"""Files written whole or not at all, and model packages that say what made them.

A *package* is a directory written by a model's ``save_pretrained``: its own files (weights in
safetensors, config and vocabulary in JSON, ...) and ``package.json``, which records

- ``kind`` (the class that loads it), ``sha256`` (the package's content hash: over its files' hashes,
  ``package.json`` excluded, so the same weights and settings always give the same hash) and ``files``
  (each file's SHA-256, checked on every load);
- what made it: the time, the library versions, the git commit of the code (and whether it had
  uncommitted changes);
- ``inputs``: for a model fed by other models (the multimodal tagger and the fusion network read the
  audio tagger's embedding), which package produced each input, by content hash, with the path it was
  read from and, where it was bundled, its place inside this package (``inputs/<name>``).

Saving writes the whole package beside the target and then swaps it in. A target that holds files the
new package would not write (anything but an older save of the same layout) is refused unless
``overwrite=True``, and even then those files stay where they are.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

FORMAT = "coldtag-package/1"
PACKAGE_FILE = "package.json"
INPUTS_DIR = "inputs"
SOFTWARE = ("coldtag", "torch", "torchaudio", "pytorch-lightning", "implicit", "numpy", "safetensors",
            "transformers")


class ProvenanceError(ValueError):
    """A package whose record of what made it is missing, damaged, or does not match its files or inputs."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block ends without an
    error, removed otherwise. A reader sees the old file or the new one, never a part of either.

    The temporary name keeps ``path``'s suffix, for writers that add one (``np.savez`` adds ``.npz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (relative paths taken from the working directory), links followed, lies in ``root``."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (`atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: str | Path, value) -> None:
    """``value`` as indented JSON, atomically; NumPy scalars become plain numbers."""
    atomic_write(path, json.dumps(value, indent=2, default=_plain) + "\n")


def _plain(value):
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(directory: Path) -> set[str]:
    """Every file and every empty folder below ``directory``, as relative POSIX paths (folders end in /)."""
    found = set()
    for root, folders, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        found.update((base / name).as_posix() for name in files)
        if not folders and not files and Path(root) != directory:
            found.add(base.as_posix() + "/")
        # A link to a folder is an entry of its own, not a tree to walk.
        found.update((base / name).as_posix() for name in folders if (Path(root) / name).is_symlink())
    return found


def replace_directory(staging: Path, target: Path, overwrite: bool = False) -> None:
    """Move the finished directory ``staging`` to ``target`` without losing a file of ``target`` that
    ``staging`` does not hold too.

    ``target`` absent, or holding only what ``staging`` holds (an older save of the same layout): the
    two are swapped. Otherwise ``FileExistsError``, or with ``overwrite`` the files of ``staging`` are
    moved into ``target`` one by one and its other files stay.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists() and not target.is_symlink():
        staging.rename(target)
        return
    if not target.is_dir() or target.is_symlink():
        raise NotADirectoryError(f"{target}: exists and is not a directory; choose another path")
    foreign = sorted(_entries(target) - _entries(staging))
    if not foreign:
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired)
        return
    if not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"{target}: holds files that are not part of this package ({shown}); choose an "
                              "empty or new directory, or overwrite=True to write the package beside them")
    _merge(staging, target)
    shutil.rmtree(staging)


def publish_directory(staging: Path, target: Path) -> bool:
    """Rename the finished directory ``staging`` to ``target`` unless ``target`` exists: for content that
    depends only on its name (a cache keyed by its settings), where a ``target`` that appeared meanwhile
    was made by another process from the same inputs. Then ``staging`` is removed and False returned.
    Renaming a directory is atomic: a reader sees the whole of one build or nothing."""
    staging, target = Path(staging), Path(target)
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging)
        return False
    return True


def _merge(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if destination.exists() and not destination.is_dir():
                raise FileExistsError(f"{destination}: a file stands where the package writes a folder")
            _merge(entry, destination)
        elif destination.is_dir() and not destination.is_symlink():
            raise FileExistsError(f"{destination}: a folder stands where the package writes a file")
        else:
            os.replace(entry, destination)


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> dict | None:
    """The commit of the code that is running, when it runs from a git checkout; ``dirty`` when files
    differ from it."""
    source = Path(__file__).resolve().parents[1]
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _content_hash(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def save_package(directory: str | Path, write: Callable[[Path], None], kind: str, inputs: dict | None = None,
                 origin: dict | None = None, overwrite: bool = False) -> dict:
    """Write a package: ``write(folder)`` puts the model's files into a fresh folder beside
    ``directory``, then `package.json` is added and the folder swapped in (`replace_directory`).

    ``inputs``: ``{name: reference}`` of the packages that produced the model's inputs (`reference`);
    a reference with ``"bundle": True`` is copied into ``inputs/<name>`` and records where. ``origin``:
    the record the model was loaded with; when the content is unchanged its time, versions and commit
    are kept, so re-saving a loaded model does not claim it was made now. Returns the record.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
    try:
        write(staging)
        recorded_inputs = {}
        for name, ref in (inputs or {}).items():
            ref = dict(ref)
            copy_from = ref.pop("copy_from", None)
            if ref.pop("bundle", False):
                source = Path(copy_from or ref["source"])
                if read_package(source)["sha256"] != ref["sha256"]:
                    raise ProvenanceError(f"{source}: changed since it produced the {name!r} input "
                                          f"(sha256 {ref['sha256'][:12]}); cannot bundle it")
                shutil.copytree(source, staging / INPUTS_DIR / name)
                ref["bundled"] = f"{INPUTS_DIR}/{name}"
            recorded_inputs[name] = ref
        files = {entry: file_sha256(staging / entry) for entry in sorted(_entries(staging))
                 if not entry.endswith("/") and entry != PACKAGE_FILE}
        content = _content_hash(files)
        if origin and origin.get("sha256") == content:
            made = {key: origin.get(key) for key in ("created", "software", "git")}
        else:
            made = {"created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "software": software_versions(), "git": git_commit()}
        record = {"format": FORMAT, "kind": kind, "sha256": content, **made, "inputs": recorded_inputs,
                  "files": files}
        (staging / PACKAGE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        replace_directory(staging, directory, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def save_model(model, directory: str | Path, write: Callable[[Path], None], inputs: dict | None = None,
               overwrite: bool = False) -> dict:
    """`save_package` for a model that keeps the record it was loaded with or last saved as in
    ``model.package`` (and its folder in ``model.package_path``): saving it again without ``inputs``
    records the same producers (and bundles again what was bundled), and unchanged content keeps the
    record of its making. Updates both attributes; returns the record."""
    if inputs is None and model.package is not None:
        inputs = carried_inputs(model.package, model.package_path)
    model.package = save_package(directory, write, type(model).__name__, inputs=inputs, origin=model.package,
                                 overwrite=overwrite)
    model.package_path = Path(directory).resolve()
    return model.package


def read_package(directory: str | Path, kind: str | tuple[str, ...] | None = None) -> dict:
    """The verified ``package.json`` of ``directory``: present, of the expected ``kind``, and every file it
    lists present with the recorded hash. Raises `ProvenanceError` naming what is wrong."""
    directory = Path(directory)
    kinds = (kind,) if isinstance(kind, str) else kind
    wanted = " or ".join(kinds) if kinds else "coldtag"
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a saved {wanted} package (no such directory)")
    path = directory / PACKAGE_FILE
    if not path.is_file():
        raise ProvenanceError(f"{directory}: not a saved {wanted} package: no {PACKAGE_FILE}, so nothing records "
                              "what made it (a package saved before provenance was recorded must be saved again)")
    try:
        record = json.loads(path.read_text())
        files, content = dict(record["files"]), record["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise ProvenanceError(f"{path}: unreadable package record ({error})") from error
    if record.get("format") != FORMAT:
        raise ProvenanceError(f"{path}: format {record.get('format')!r}, this version reads {FORMAT!r}")
    if kinds and record.get("kind") not in kinds:
        raise ProvenanceError(f"{directory}: is a {record.get('kind')} package, not a {wanted}")
    for entry, digest in files.items():
        if not (directory / entry).is_file():
            raise ProvenanceError(f"{directory}: {entry} is missing (listed in {PACKAGE_FILE})")
        if file_sha256(directory / entry) != digest:
            raise ProvenanceError(f"{directory / entry}: differs from the file that was saved (its SHA-256 is "
                                  f"not the one {PACKAGE_FILE} records); it was changed or damaged since")
    if _content_hash(files) != content:
        raise ProvenanceError(f"{path}: the content hash does not match the files it lists")
    return record


def reference(directory: str | Path, bundle: bool = False) -> dict:
    """How a package that produced a model's input is recorded: its kind, content hash and absolute path;
    ``bundle`` asks `save_package` to copy it into the new package."""
    directory = Path(directory).resolve()
    record = read_package(directory)
    return {"kind": record["kind"], "sha256": record["sha256"], "source": str(directory), "bundle": bundle}


def carried_inputs(record: dict, directory: str | Path | None) -> dict:
    """The ``inputs`` of a loaded package as `save_package` takes them, so that saving the model again
    elsewhere records the same producers and bundles again what was bundled (from ``directory``)."""
    carried = {}
    for name, ref in record.get("inputs", {}).items():
        ref = dict(ref)
        bundled = ref.pop("bundled", None)
        if bundled and directory is not None:
            ref.update(copy_from=str(Path(directory) / bundled), bundle=True)
        carried[name] = ref
    return carried


def input_package(directory: str | Path, record: dict, name: str) -> Path:
    """Where the package that produced input ``name`` of the package at ``directory`` is: bundled inside
    it, or still at the path it was read from with the same content. Raises `ProvenanceError` saying
    which package is needed when neither holds."""
    directory = Path(directory)
    ref = record.get("inputs", {}).get(name)
    if not ref or "sha256" not in ref:
        raise ProvenanceError(f"{directory}: records no package for its {name!r} input")
    candidates = [directory / ref["bundled"]] if ref.get("bundled") else []
    if ref.get("source"):
        candidates.append(Path(ref["source"]))
    for candidate in candidates:
        try:
            if read_package(candidate, ref.get("kind"))["sha256"] == ref["sha256"]:
                return candidate
        except (FileNotFoundError, ProvenanceError):
            continue
    raise ProvenanceError(
        f"{directory}: its {name!r} input was made by the {ref.get('kind')} package sha256:{ref['sha256'][:12]}, "
        f"which is neither bundled in it nor at {ref.get('source')} with that content any more; save it again "
        f"with that package bundled, or give the package where it is")
