"""The source tree: finding the files, noticing which changed, and editing them (churn) so there is work to do.

Change detection is incremental, as in build tools: a file whose (mtime_ns,
size) is unchanged is skipped without reading it; otherwise its blake2b hash
decides. Churn toggles a trailing marker comment, so a file alternates between
two contents and a second touch brings back the first (and its cache entry).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Sequence

SKIP_DIRS: Final = frozenset({"site-packages", "test", "tests", "idlelib", "__pycache__"})
MARKER: Final = b"\n# pipepulse demo: touched\n"
ZIPF_EXPONENT: Final = 1.1  # a few files change often, most rarely: the shape that makes a cache worth having


def find_sources(root: Path, max_files: int) -> list[str]:
    """The first `max_files` `.py` files found under `root` (a sorted walk), sorted, as relative POSIX paths."""
    found: list[str] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIP_DIRS and not d.startswith("."))
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in sorted(files) if name.endswith(".py"))
        if len(found) >= max_files:
            break
    return sorted(found[:max_files])


def module_name(relative: str) -> str:
    """`pkg/sub/mod.py` -> `pkg.sub.mod`; `pkg/__init__.py` -> `pkg`."""
    parts = relative.removesuffix(".py").split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def copy_sources(source: Path, files: Sequence[str], work_dir: Path) -> None:
    """Copy `files` from `source` to `work_dir`, so that churn edits copies, never the originals."""
    for relative in files:
        target = work_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)


@dataclass(frozen=True, slots=True)
class Change:
    """A file whose content differs from the last scan (every file, at the first scan)."""

    relative: str
    module: str
    path: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class Scan:
    seen: int
    changed: list[Change]


class Scanner:
    """Remembers each file's (mtime_ns, size) and content hash, and reports what changed since the last scan."""

    def __init__(self, root: Path, files: Sequence[str]) -> None:
        self._files = [(relative, module_name(relative), str(root / relative)) for relative in files]
        self._stats: dict[str, tuple[int, int]] = {}
        self._digests: dict[str, bytes] = {}

    def scan(self) -> Scan:
        seen = 0
        changed: list[Change] = []
        for relative, module, path in self._files:
            try:
                stat = os.stat(path)
                signature = (stat.st_mtime_ns, stat.st_size)
                if self._stats.get(relative) == signature:
                    seen += 1
                    continue
                with open(path, "rb") as file:
                    digest = hashlib.blake2b(file.read(), digest_size=16).digest()
            except OSError:  # deleted or unreadable meanwhile: looked at again next scan
                self._stats.pop(relative, None)
                continue
            seen += 1
            self._stats[relative] = signature
            if self._digests.get(relative) != digest:
                self._digests[relative] = digest
                changed.append(Change(relative, module, path, digest))
        return Scan(seen, changed)


class Churner:
    """Touches files with a Zipf-like skew (rank r is chosen with weight 1/r**1.1), seeded for repeatable runs."""

    def __init__(self, root: Path, files: Sequence[str], *, seed: int = 0) -> None:
        self._root = root
        self._rng = random.Random(seed)
        self._ranked = list(files)
        self._rng.shuffle(self._ranked)  # which files are hot is arbitrary, but fixed for the run
        self._cumulative = list(itertools.accumulate(1.0 / rank**ZIPF_EXPONENT for rank in range(1, len(files) + 1)))

    def churn(self, count: int) -> list[str]:
        """Touch `count` files drawn with the skew (a file may be drawn twice); returns them in order."""
        if not self._ranked or count <= 0:
            return []
        chosen = self._rng.choices(self._ranked, cum_weights=self._cumulative, k=count)
        for relative in chosen:
            self.touch(relative)
        return chosen

    def touch(self, relative: str) -> None:
        """Add the marker comment, or remove it if present: the file alternates between two contents."""
        path = self._root / relative
        content = path.read_bytes()
        path.write_bytes(content[: -len(MARKER)] if content.endswith(MARKER) else content + MARKER)
