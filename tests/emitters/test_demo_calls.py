"""The demo pipeline's detection on a tree whose calls are known: pure extraction, incremental detection, the cache,
and the real `python -m emitters.demo --once` process, unmonitored and monitored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis

from emitters.demo.cache import LruCache
from emitters.demo.calls import Breadcrumb, extract_calls
from emitters.demo.pipeline import Pipeline
from emitters.demo.tree import MARKER, Churner, Scanner, copy_sources, find_sources, module_name
from processors.embedded import EmbeddedServer
from schemas import LifecycleEvent, OperationEvent

from tests.emitters.helpers import DEMO_FILES as FILES
from tests.emitters.helpers import DEMO_TREE, delivered_batches

ROOT = Path(__file__).parent.parent.parent
PARSABLE = FILES[1:]

# Written out by hand from the fixture sources: (caller, callee, line), in source order.
EXPECTED: dict[str, list[tuple[str, str, int]]] = {
    "pkg/__init__.py": [
        ("pkg", "logging.getLogger", 5),  # module-level code
        ("pkg.Greeter", "dict", 9),  # class body
        ("pkg.Greeter.__init__", "name.strip", 12),
        ("pkg.Greeter.greet", "pkg.Greeter.format", 15),  # self.format resolved
        ("pkg.Greeter.greet", "print", 16),
        ("pkg.Greeter.create", "pkg.Greeter.validate", 21),  # cls.validate resolved
        ("pkg.Greeter.create", "cls", 21),
        ("pkg.Greeter.validate", "bool", 25),
        ("pkg.Greeter", "functools.lru_cache", 27),  # a decorator runs in the class body
        ("pkg.Greeter.format", "<expr>.format", 29),  # a method of a string literal
    ],
    "pkg/util.py": [
        ("pkg.util.outer.inner", "os.path.join", 6),  # nested function, dotted callee
        ("pkg.util.outer", "inner", 8),
        ("pkg.util.outer", "sorted", 8),  # same line: by column
        ("pkg.util", "int", 11),  # a default value runs where the function is defined
        ("pkg.util.make_adder", "max", 12),  # a lambda belongs to its enclosing function
        ("pkg.util.chained", "make_adder", 16),  # make_adder(1)(2): the outer call has no name
        # handlers[0]("x") on line 18: no name, skipped
        ("pkg.util.chained", "<expr>.splitlines", 19),
        ("pkg.util.chained", "<expr>.read", 19),
        ("pkg.util.chained", "open", 19),
        ("pkg.util", "print", 23),
        ("pkg.util", "outer", 23),
    ],
    "script.py": [
        ("script.main", "asyncio.sleep", 7),  # async def
        ("script.main", "<expr>.greet", 8),
        ("script.main", "Greeter.create", 8),
        ("script.Outer.Inner.run", "script.Outer.Inner.helper", 14),  # self in a nested class
        ("script.Outer.Inner.helper", "len", 17),
        ("script", "asyncio.run", 20),
        ("script", "main", 20),
    ],
}


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_breadcrumbs_of_known_calls(relative: str) -> None:
    found = extract_calls((DEMO_TREE / relative).read_text(), module_name(relative))
    assert found == [Breadcrumb(*expected) for expected in EXPECTED[relative]]


def test_a_syntax_error_is_raised_for_the_parser_to_record() -> None:
    with pytest.raises(SyntaxError):
        extract_calls((DEMO_TREE / "broken.py").read_text(), "broken")


@pytest.mark.parametrize(
    ("relative", "module"),
    [("os.py", "os"), ("json/decoder.py", "json.decoder"), ("json/__init__.py", "json"), ("__init__.py", "__init__")],
)
def test_module_names(relative: str, module: str) -> None:
    assert module_name(relative) == module


def test_sources_skip_tests_caches_and_site_packages_and_are_capped(tmp_path: Path) -> None:
    for relative in ("a.py", "b.txt", "test/t.py", "tests/t.py", "idlelib/i.py", "site-packages/s.py", "__pycache__/c.py", "pkg/x.py", "pkg/y.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x = 1\n")
    assert find_sources(tmp_path, 100) == ["a.py", "pkg/x.py", "pkg/y.py"]
    assert find_sources(tmp_path, 2) == ["a.py", "pkg/x.py"]
    assert find_sources(DEMO_TREE, 100) == FILES


@pytest.mark.parametrize(
    ("used", "new_size", "kept"),
    [
        ([], 4, ["k6", "k7", "k8", "k9"]),  # least recently put go first
        (["k0", "k1"], 3, ["k9", "k0", "k1"]),  # a get makes an entry recent
        (["k5"], 1, ["k5"]),
        ([], 20, [f"k{i}" for i in range(10)]),  # growing evicts nothing
    ],
)
def test_lru_resize_evicts_down_to_the_new_size(used: list[str], new_size: int, kept: list[str]) -> None:
    cache: LruCache[str, int] = LruCache(10)
    for i in range(10):
        cache.put(f"k{i}", i)
    for key in used:
        assert cache.get(key) == int(key[1:])
    assert cache.resize(new_size) == 10 - len(kept)
    assert len(cache) == len(kept)
    assert [key for key in (f"k{i}" for i in range(10)) if key in cache] == sorted(kept)
    cache.put("new", -1)
    assert len(cache) == min(new_size, len(kept) + 1)
    assert (cache.hits_total, cache.misses_total) == (len(used), 0)
    assert cache.get("absent") is None and cache.misses_total == 1


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    copy_sources(DEMO_TREE, FILES, tmp_path)
    return tmp_path


def test_scanner_reports_only_the_touched_file_and_a_second_touch_restores_its_hash(work_tree: Path) -> None:
    scanner = Scanner(work_tree, FILES)
    first = scanner.scan()
    assert (first.seen, [c.relative for c in first.changed]) == (4, FILES)
    digests = {c.relative: c.digest for c in first.changed}
    assert scanner.scan().changed == []
    churner = Churner(work_tree, FILES)
    churner.touch("pkg/util.py")
    assert (work_tree / "pkg/util.py").read_bytes().endswith(MARKER)
    (touched,) = scanner.scan().changed
    assert (touched.relative, touched.module) == ("pkg/util.py", "pkg.util")
    assert touched.digest != digests["pkg/util.py"]
    churner.touch("pkg/util.py")
    (restored,) = scanner.scan().changed
    assert restored.digest == digests["pkg/util.py"]
    assert (work_tree / "pkg/util.py").read_bytes() == (DEMO_TREE / "pkg/util.py").read_bytes()


def test_a_file_whose_mtime_and_size_are_unchanged_is_not_read(work_tree: Path) -> None:
    scanner = Scanner(work_tree, FILES)
    scanner.scan()
    path = work_tree / "script.py"
    before = os.stat(path)
    path.write_bytes(path.read_bytes().replace(b"world", b"WORLD"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert scanner.scan().changed == []  # the stat says unchanged: not hashed, so not noticed
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert [c.relative for c in scanner.scan().changed] == ["script.py"]


def test_churn_is_skewed_towards_a_few_files(tmp_path: Path) -> None:
    files = [f"m{i}.py" for i in range(50)]
    for name in files:
        (tmp_path / name).write_text("x = 1\n")
    chosen = Churner(tmp_path, files, seed=1).churn(2000)
    counts = sorted((chosen.count(name) for name in files), reverse=True)
    assert len(chosen) == 2000
    assert counts[0] > 10 * counts[25]  # rank 1 against a median rank: 1/1**1.1 against 1/26**1.1


@pytest.fixture
def pipeline(work_tree: Path) -> Iterator[Pipeline]:
    pipe = Pipeline(work_tree, FILES, concurrency=2, cache_size=16)
    yield pipe
    pipe.close()


def test_incremental_detection_reprocesses_only_what_changed_and_hits_the_cache_on_return(work_tree: Path, pipeline: Pipeline) -> None:
    first = pipeline.step()
    assert (first.files_changed, first.cache_misses, first.files_processed, first.files_failed) == (4, 4, 3, 1)
    assert first.calls == sum(len(v) for v in EXPECTED.values())
    assert pipeline.step().files_changed == 0
    churner = Churner(work_tree, FILES)
    churner.touch("script.py")
    touched = pipeline.step()
    assert (touched.files_changed, touched.cache_hits, touched.cache_misses, touched.files_processed) == (1, 0, 1, 1)
    assert (touched.calls, touched.calls_added, touched.calls_removed) == (7, 0, 0)  # a trailing comment changes no call
    churner.touch("script.py")
    restored = pipeline.step()
    assert (restored.files_changed, restored.cache_hits, restored.cache_misses, restored.files_processed) == (1, 1, 0, 1)
    assert {path: [(b.caller, b.callee, b.line) for b in crumbs] for path, crumbs in pipeline.breadcrumbs().items()} == EXPECTED


def test_an_edit_shows_calls_added_and_removed(work_tree: Path, pipeline: Pipeline) -> None:
    pipeline.step()
    (work_tree / "script.py").write_text((work_tree / "script.py").read_text().replace("asyncio.run(main())", "print(main)"))
    edited = pipeline.step()
    assert (edited.files_processed, edited.calls_added, edited.calls_removed) == (1, 1, 2)


def run_demo(*args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "emitters.demo", "--source", str(DEMO_TREE), "--once", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, float] = json.loads(result.stdout)
    return summary


def test_the_real_process_unmonitored_writes_the_expected_breadcrumbs(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    summary = run_demo("--no-monitoring", "--json-breadcrumbs", str(out))
    assert json.loads(out.read_text()) == {path: [list(b) for b in crumbs] for path, crumbs in EXPECTED.items()}
    assert (summary["files"], summary["calls"]) == (4, 28)
    assert summary["files_per_s"] > 0


def test_the_real_process_monitored_reports_what_it_did(tmp_path: Path, real_server: EmbeddedServer) -> None:
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out.json"
    run_demo("--json-breadcrumbs", str(out), env={"PIPEPULSE_REDIS_URL": real_server.url, "PIPEPULSE_PREFIX": prefix})
    assert json.loads(out.read_text()) == {path: [list(b) for b in crumbs] for path, crumbs in EXPECTED.items()}
    client = redis.Redis.from_url(real_server.url)
    events = [(batch.component, event) for batch in delivered_batches(client, prefix) for event in batch.events]
    client.close()
    operations = [(component, e) for component, e in events if isinstance(e, OperationEvent)]
    assert sum(e.counters.get("files_processed", 0) for c, e in operations if c == "detector") == len(PARSABLE)
    assert sum(e.counters.get("calls_detected", 0) for c, e in operations if c == "detector") == 28
    assert sorted(e.error_type or "" for c, e in operations if c == "parser" and e.operation == "parse") == ["", "", "", "SyntaxError"]  # in the workers
    assert sum(e.counters.get("calls_extracted", 0) for c, e in operations if c == "extractor") == 28
    lookups = [e for c, e in operations if c == "breadcrumb_cache"]
    assert (len(lookups), sum(e.cache_misses for e in lookups)) == (4, 4)
    configured = {c for c, e in events if isinstance(e, LifecycleEvent) and e.kind == "configured"}
    assert configured == {"extractor", "breadcrumb_cache"}
