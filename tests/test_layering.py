"""mmgfn's import graph: one layering, no circle.

Layers, lowest first: ``registry`` < ``utils`` < ``models``, ``datasets``
< ``evaluation`` < ``visualization`` < ``engine`` < ``apis``. A module may
import its own package and the packages of lower layers only (``models``
and ``datasets`` share a layer and do not import each other). Every import
statement counts, at module level or inside a function, and importing
``a.b.c`` counts as importing the package ``a.b`` too (its ``__init__``
runs first).
"""
import ast
import os
import os.path as osp
from collections import defaultdict

import mmgfn

PACKAGE_ROOT = osp.dirname(mmgfn.__file__)
LAYERS = {
    'registry': 0, 'version': 0, 'utils': 1, 'models': 2, 'datasets': 2,
    'evaluation': 3, 'visualization': 4, 'engine': 5, 'apis': 6
}


def package_modules(root: str = PACKAGE_ROOT) -> dict:
    """``{dotted module name: file}`` of every module of the package."""
    base = osp.dirname(root)
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, base)[:-3].replace(os.sep, '.')
                modules[dotted.removesuffix('.__init__')] = path
    return modules


def _targets(module: str, node: ast.AST, is_package: bool,
             modules: dict) -> list:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ''
        if node.level:
            parts = module.split('.')
            if not is_package:
                parts = parts[:-1]
            parts = parts[:len(parts) - (node.level - 1)]
            base = '.'.join(parts + ([base] if base else []))
        names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules
                 else base for alias in node.names]
    found = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition('.')[0]
        if not name or name == 'mmgfn':
            continue
        found.append(name)
        parts = name.split('.')
        for i in range(2, len(parts)):
            package = '.'.join(parts[:i])
            if not f'{module}.'.startswith(f'{package}.'):
                found.append(package)
    return found


def import_graph(modules: dict) -> dict:
    """``{module: {(imported module, line)}}`` over the package's own
    modules, every import statement included."""
    graph = defaultdict(set)
    for module, path in modules.items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith('__init__.py')
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, is_package, modules):
                    if target != module:
                        graph[module].add((target, node.lineno))
    return graph


def layer(module: str) -> int:
    return LAYERS[module.split('.')[1]]


def upward_imports(graph: dict) -> list:
    """``'a (line) -> b'`` for each import of a higher layer, or of another
    package of the same layer."""
    bad = []
    for module, targets in graph.items():
        if module == 'mmgfn':  # the package's entry imports utils only
            continue
        top = module.split('.')[1]
        for target, line in targets:
            other = target.split('.')[1]
            if other != top and layer(target) >= layer(module):
                bad.append(f'{module} (line {line}) -> {target}')
    return sorted(bad)


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module."""
    edges = {m: {t for t, _ in ts} for m, ts in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    modules = package_modules()
    assert {m.split('.')[1] for m in modules if m != 'mmgfn'} <= set(LAYERS)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert upward_imports(import_graph(package_modules())) == []


def test_no_import_circle():
    assert cycles(import_graph(package_modules())) == []


def test_the_checks_see_a_planted_circle_and_an_upward_import(tmp_path):
    pkg = tmp_path / 'mmgfn'
    for sub in ('utils', 'models'):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / '__init__.py').write_text('')
    (pkg / '__init__.py').write_text('')
    (pkg / 'utils' / 'a.py').write_text(
        'def f():\n    from mmgfn.models import b\n')
    (pkg / 'models' / 'b.py').write_text('from ..utils import a\n')
    graph = import_graph(package_modules(str(pkg)))
    assert upward_imports(graph) == [
        'mmgfn.utils.a (line 2) -> mmgfn.models',
        'mmgfn.utils.a (line 2) -> mmgfn.models.b'
    ]
    assert cycles(graph) == [['mmgfn.models.b', 'mmgfn.utils.a']]
