"""The package layout shows the flow: probe -> capture -> reduce -> render
-> write, and no stage reaches forward.

Every import of every module is read from its source (``ast``), so the
rule holds for imports inside functions too.
"""
import ast
import os
import os.path as osp
from typing import Iterator, Tuple

import mmfeatvis

PACKAGE = osp.dirname(mmfeatvis.__file__)
STAGES = ('probe', 'capture', 'reduce', 'render', 'write')
#: Imported by anything: it imports nothing of mmfeatvis.
LEAVES = ('engine_internals', )
MAX_TOP_LEVEL = 13


def _modules() -> Iterator[Tuple[str, str]]:
    """``(dotted name, path)`` of every module of the package."""
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                rel = osp.relpath(path, osp.dirname(PACKAGE))[:-3]
                parts = rel.split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                yield '.'.join(parts), path


def _imports(module: str, path: str) -> Iterator[str]:
    """The mmfeatvis modules ``module`` imports, as dotted names."""
    is_package = path.endswith('__init__.py')
    package = module.split('.') if is_package else module.split('.')[:-1]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'mmfeatvis':
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            if name.split('.')[0] == 'mmfeatvis':
                # ``from . import x`` imports the module x.
                if node.module is None:
                    for alias in node.names:
                        yield f'{name}.{alias.name}'
                else:
                    yield name


def _top(name: str) -> str:
    """The top-level entry a dotted name belongs to (``'reduce'``)."""
    parts = name.split('.')
    return parts[1] if len(parts) > 1 else ''


def test_the_top_level_holds_the_stages_and_few_else():
    entries = sorted(
        name for name in os.listdir(PACKAGE)
        if name not in ('__init__.py', 'version.py', '__pycache__'))
    assert len(entries) <= MAX_TOP_LEVEL, entries
    for stage in STAGES:
        assert osp.isdir(osp.join(PACKAGE, stage)), stage


def test_no_stage_imports_a_later_stage_or_the_shells():
    found = []
    for module, path in _modules():
        own = _top(module)
        if own not in STAGES:
            continue
        for imported in _imports(module, path):
            other = _top(imported)
            if other == own or other in LEAVES:
                continue
            if other not in STAGES or (STAGES.index(other) >
                                       STAGES.index(own)):
                found.append(f'{module} imports {imported}')
    assert not found, found


def test_the_leaves_import_nothing_of_mmfeatvis():
    for module, path in _modules():
        if _top(module) in LEAVES:
            assert list(_imports(module, path)) == [], module


def test_the_walk_sees_relative_imports():
    # The rule above is only as good as the import reading.
    path = osp.join(PACKAGE, 'render', 'featmap.py')
    imported = set(_imports('mmfeatvis.render.featmap', path))
    assert 'mmfeatvis.probe.geometry' in imported
    assert 'mmfeatvis.reduce' in imported
