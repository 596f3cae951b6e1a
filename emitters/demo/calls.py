"""Function-call detection: which qualified function calls which name, on which line (pure, `ast` only).

The caller is the qualified name of the innermost enclosing function or class
body (`mod.func`, `mod.Class.method`, `mod.outer.inner`), or the module itself
for module-level code; lambdas, comprehensions, decorators and default values
belong to the scope that evaluates them. The callee is the dotted name as
written (`os.path.join`, `print`), except `self.m(...)` and `cls.m(...)` inside
a class, which resolve to the method `mod.Class.m`. A call of attributes of an
expression that is not a name keeps the attributes (`"".join(x)` and
`f().out.close()` give `<expr>.join` and `<expr>.out.close`); a call of
something that is neither a name nor an attribute (`f()()`, `handlers[0]()`,
`(lambda: 0)()`) is skipped: there is no name to report.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Final

EXPR: Final = "<expr>"  # the receiver of a method called on something other than a name


@dataclass(frozen=True, slots=True)
class Breadcrumb:
    """One call site: `caller` calls `callee` at `line`."""

    caller: str
    callee: str
    line: int


def extract_calls(source: str | bytes, module: str) -> list[Breadcrumb]:
    """Every call in `source`, in source order; raises SyntaxError (or ValueError for NUL bytes) like `ast.parse`."""
    return calls_in(ast.parse(source), module)


def calls_in(tree: ast.Module, module: str) -> list[Breadcrumb]:
    """Every call in an already parsed module, in source order (line, then column)."""
    finder = _CallFinder(module)
    finder.visit(tree)
    finder.found.sort(key=lambda item: item[0])
    return [crumb for _, crumb in finder.found]


class _CallFinder(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.scope = [module]  # qualified names, innermost last: every call of one scope shares its caller string
        self.classes: list[str] = []  # qualified names of the enclosing classes, innermost last
        self.callees: dict[str, str] = {}  # one string per distinct callee, so a file's breadcrumbs pickle small
        self.found: list[tuple[tuple[int, int], Breadcrumb]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for outer in (*node.decorator_list, node.args, *([node.returns] if node.returns else [])):
            self.visit(outer)  # evaluated where the function is defined
        self.scope.append(f"{self.scope[-1]}.{node.name}")
        for statement in node.body:
            self.visit(statement)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for outer in (*node.decorator_list, *node.bases, *node.keywords):
            self.visit(outer)
        self.scope.append(f"{self.scope[-1]}.{node.name}")
        self.classes.append(self.scope[-1])
        for statement in node.body:
            self.visit(statement)
        self.classes.pop()
        self.scope.pop()

    def visit_Call(self, node: ast.Call) -> None:
        callee = self._callee(node.func)
        if callee is not None:
            callee = self.callees.setdefault(callee, callee)
            self.found.append(((node.lineno, node.col_offset), Breadcrumb(self.scope[-1], callee, node.lineno)))
        self.generic_visit(node)

    def _callee(self, func: ast.expr) -> str | None:
        if isinstance(func, ast.Name):
            return func.id
        if not isinstance(func, ast.Attribute):
            return None
        parts = [func.attr]
        base = func.value
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        if not isinstance(base, ast.Name):
            return ".".join([EXPR, *reversed(parts)])
        if base.id in ("self", "cls") and len(parts) == 1 and self.classes:
            return f"{self.classes[-1]}.{func.attr}"
        return ".".join([base.id, *reversed(parts)])
