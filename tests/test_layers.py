"""No two parts of hookstream_ui import each other, top-level modules included.

import-linter's layers contract (`make lint`) holds the packages it names in their order;
this also covers the frame around them (config, errors, extensions, forms, runner…), which
no layer lists, so a cycle through one of those is caught too.
"""

from __future__ import annotations

import graphlib

import grimp


def _units() -> dict[str, set[str]]:
    """Each first-level package or module of hookstream_ui and the others it imports."""
    graph = grimp.build_graph("hookstream_ui")

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if unit(imported) != unit(module):
                imports.setdefault(unit(module), set()).add(unit(imported))
    return imports


def test_no_two_parts_of_the_app_import_each_other():
    sorter = graphlib.TopologicalSorter(_units())
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_check_sees_a_cycle():
    imports = _units()
    imports.setdefault("hookstream_ui.values", set()).add("hookstream_ui.api")  # as if values imported api
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("a cycle through values and api went unseen")
