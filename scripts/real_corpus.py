"""The real-recording corpus: free game soundtracks from Debian's packages, installed by name, as one manifest.

    .venv/bin/python scripts/real_corpus.py --out data/real        # or: make corpus

Installs the packages below with apt-get when they are missing (as root; otherwise it names the command to
run), unpacks what a package keeps in an archive (Nexuiz's ``music.pk3``), mixes Frets on Fire's stems
(backing, guitar, rhythm) into one file per song, and writes ``OUT/manifest.csv`` and one manifest per split
(``train.csv``, ``val.csv``, ``test.csv``): one row per track with its ``audio_path`` (absolute, so
``coldtag annotate OUT/test.csv --allow-outside`` annotates the held-out albums), album (a package, or one
soundtrack of a package), package, licence (the package's DEP-5 ``copyright`` stanza that covers the file,
else the licence its copyright file states), the copyright file, the duration in seconds and the split. No
audio is committed: the paths point into ``/usr/share`` or into
OUT, where the unpacked and mixed files are written.

The split is by album and fixed here, before any model runs: students learn from the ``train`` albums,
settings are chosen on the ``val`` album, and every agreement or accuracy figure is measured on the ``test``
albums, which no student or choice has heard (Warzone 2100's three soundtracks among them).
A file that cannot be read is named in ``OUT/problems.txt`` with the reason and left out; the rest go on.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagging.audio import AUDIO_SUFFIXES, AudioDecodeError, audio_info


@dataclass(frozen=True)
class Album:
    """One album of the corpus: where its files are once ``package`` is installed, and its split."""

    name: str
    package: str
    folder: str  # installed folder (or, for an archive, the archive file)
    split: str
    license: str  # what the copyright file states for the music, when it has no DEP-5 stanza for a file
    kind: str = "files"  # "files", "archive" (a zip such as a .pk3) or "stems" (one folder of stems per song)


ALBUMS = (
    Album("nexuiz", "nexuiz-music", "/usr/share/games/nexuiz/data/music.pk3", "train", "GPL-2+", "archive"),
    Album("hyperrogue", "hyperrogue-music", "/usr/share/hyperrogue/music", "train", "GPL-2+"),
    Album("drascula", "drascula-music", "/usr/share/scummvm/drascula/audio", "train", "Drascula-License"),
    Album("wesnoth", "wesnoth-1.16-music", "/usr/share/games/wesnoth/1.16/data/core/music", "train", "GPL-2+"),
    Album("planetblupi", "planetblupi-music-ogg", "/usr/share/planetblupi/music", "train", "GPL-3+"),
    Album("fretsonfire-muldjord", "fretsonfire-songs-muldjord", "/usr/share/games/fretsonfire/data/songs/muldjord",
          "train", "CC-BY-SA-3.0", "stems"),
    Album("singularity", "singularity-music", "/usr/share/games/singularity/music", "val", "CC-BY-SA-3.0"),
    Album("warzone2100-aftermath", "warzone2100-music",
          "/usr/share/games/warzone2100/music/albums/aftermath_soundtrack", "test", "GPL-2+"),
    Album("warzone2100-legacy", "warzone2100-music", "/usr/share/games/warzone2100/music/albums/legacy_soundtrack",
          "test", "GPL-2+"),
    Album("warzone2100-original", "warzone2100-music",
          "/usr/share/games/warzone2100/music/albums/original_soundtrack", "test", "GPL-2+"),
    Album("asc", "asc-music", "/usr/share/games/asc/music", "test", "GPL-2+"),
    Album("fretsonfire-sectoid", "fretsonfire-songs-sectoid", "/usr/share/games/fretsonfire/data/songs/sectoid",
          "test", "GPL", "stems"),
)
COLUMNS = ("track_id", "audio_path", "album", "package", "license", "copyright", "duration_seconds", "split")


def install(packages: list[str]) -> None:
    """apt-get install the missing ``packages``; as another user than root, exit naming the command."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"real_corpus: install the soundtracks first: sudo {' '.join(command)}")
    print(f"real_corpus: installing {' '.join(missing)} with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(command, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                   stdout=subprocess.DEVNULL)


def dep5_licenses(copyright_file: Path) -> list[tuple[list[str], str]]:
    """The ``(Files patterns, License)`` stanzas of a machine-readable (DEP-5) copyright file, in order."""
    stanzas, patterns, in_files = [], None, False
    for line in copyright_file.read_text(errors="replace").splitlines():
        if line.startswith("Files:"):
            patterns, in_files = line.split(":", 1)[1].split(), True
        elif in_files and line[:1].isspace() and line.strip():  # a continuation line of the Files field
            patterns += line.split()
        else:
            in_files = False
        if line.startswith("License:") and patterns is not None:
            stanzas.append((patterns, line.split(":", 1)[1].strip()))
            patterns = None
    return stanzas


def file_license(path: str, stanzas: list[tuple[list[str], str]], stated: str) -> str:
    """The licence of the last DEP-5 stanza naming ``path`` by its own name (DEP-5: the last match wins);
    a package-wide ``*`` stanza is the packaging's, so without a stanza of its own the stated licence holds."""
    found = stated
    for patterns, license in stanzas:
        if any(p != "*" and "/" in p and fnmatch.fnmatch(path, f"*/{p}") for p in patterns) and license:
            found = license
    return found


def album_files(album: Album, out: Path) -> list[Path]:
    """The album's audio files, unpacking or mixing into ``out/audio/<album>`` what needs it."""
    folder = Path(album.folder)
    if album.kind == "files":
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    target = out / "audio" / album.name
    target.mkdir(parents=True, exist_ok=True)
    if album.kind == "archive":
        with zipfile.ZipFile(folder) as archive:
            for member in archive.namelist():
                if Path(member).suffix.lower() in AUDIO_SUFFIXES:
                    destination = target / Path(member).name
                    if not destination.exists():
                        destination.write_bytes(archive.read(member))
        return sorted(target.iterdir())
    mixed = []
    for song in sorted(p for p in folder.iterdir() if p.is_dir()):
        stems = sorted(song.glob("*.ogg"))
        destination = target / f"{re.sub(r'[^A-Za-z0-9_-]+', '_', song.name)}.ogg"
        if stems and not destination.exists():
            inputs = [arg for stem in stems for arg in ("-i", str(stem))]
            subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex",
                            f"amix=inputs={len(stems)}:normalize=0", "-c:a", "libvorbis", "-q:a", "6",
                            str(destination)], check=True)
        if stems:
            mixed.append(destination)
    return mixed


def build(out: Path) -> list[dict]:
    install(sorted({album.package for album in ALBUMS}))
    out.mkdir(parents=True, exist_ok=True)
    rows, problems = [], []
    for album in ALBUMS:
        copyright_file = Path("/usr/share/doc") / album.package / "copyright"
        stanzas = dep5_licenses(copyright_file)
        for path in album_files(album, out):
            try:
                duration = audio_info(path).duration
            except AudioDecodeError as error:
                problems.append(str(error))
                continue
            if not duration:
                problems.append(f"{path}: its header states no duration")
                continue
            rows.append({"track_id": f"{album.name}/{path.stem}", "audio_path": str(path.resolve()),
                         "album": album.name,
                         "package": album.package, "license": file_license(str(path), stanzas, album.license),
                         "copyright": str(copyright_file), "duration_seconds": round(duration, 3),
                         "split": album.split})
    for name, chosen in [("manifest", rows)] + [(split, [r for r in rows if r["split"] == split])
                                                for split in ("train", "val", "test")]:
        with open(out / f"{name}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(chosen)
    (out / "problems.txt").write_text("".join(f"{p}\n" for p in problems))
    for problem in problems:
        print(f"real_corpus: left out {problem}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/real"), help="where the manifest (and unpacked "
                        "or mixed files) go (default data/real)")
    options = parser.parse_args(argv)
    rows = build(options.out)
    for split in ("train", "val", "test"):
        chosen = [r for r in rows if r["split"] == split]
        albums = sorted({r["album"] for r in chosen})
        hours = sum(r["duration_seconds"] for r in chosen) / 3600
        print(f"{split}: {len(chosen)} tracks, {hours:.1f} h, albums {', '.join(albums)}")
    print(f"manifest: {options.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
