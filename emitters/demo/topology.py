"""The demo pipeline's data flow, declared for the dependency graph: a fault upstream marks what it feeds as impacted."""

from __future__ import annotations

from typing import Final

DEPENDS_ON: Final = {
    "breadcrumb_cache": ("file_watcher",),
    "extractor": ("file_watcher", "parser"),
    "detector": ("breadcrumb_cache", "extractor"),
}
