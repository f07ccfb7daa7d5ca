"""The package's import graph has no cycle (grimp reads it statically, lazy imports included)."""

import grimp


def _cyclic_edges(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    """Direct imports a -> b where b also reaches a: each is part of a cycle."""
    return {
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if graph.chain_exists(importer=b, imported=a)
    }


def test_the_finder_sees_a_cycle_when_there_is_one() -> None:
    graph = grimp.ImportGraph()
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    assert _cyclic_edges(graph) == {("p.a", "p.b"), ("p.b", "p.a")}


def test_medsim_has_no_import_cycle() -> None:
    graph = grimp.build_graph("medsim", exclude_type_checking_imports=False)
    assert "medsim.pubmed.stage" in graph.modules
    assert _cyclic_edges(graph) == set()
