"""Finding what the command names: images, the config, checkpoints.

Every missing or ambiguous input becomes a :class:`UsageError` whose
message names the argument and, where it can, the closest existing name.
"""
import difflib
import glob
import importlib.util
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from ..capture import is_glob
from .errors import UsageError

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
CHECKPOINT_EXTENSIONS = ('.pth', '.pt', '.ckpt')
WRITE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: Packages whose installed configs ``package::path`` can name.
CONFIG_PACKAGES = {'mmdet': 'mmdet', 'mmyolo': 'mmyolo', 'mmseg': 'mmseg',
                   'mmpretrain': 'mmpretrain'}
_URL = re.compile(r'^[a-z][a-z0-9+.-]*://', re.IGNORECASE)
_NUMBERED_CKPT = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


@dataclass
class ImageItem:
    """One image to draw and where its pictures go.

    Attributes:
        source (str): Path or URL, as given to the probe builder.
        rel_path (str): Path relative to the common folder of all images,
            mirrored under the output folder so names never collide.
    """

    source: str
    rel_path: str


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


def _walk_images(folder: str) -> Iterator[str]:
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()  # a stable order, the same on every file system
        for name in sorted(files):
            if _is_image(name):
                yield osp.join(root, name)


def collect_images(specs: Sequence[str]) -> List[ImageItem]:
    """Expand image arguments (files, folders, URLs) into a list.

    Folders are searched recursively for files with an image extension.
    Each image's ``rel_path`` is taken relative to the deepest folder that
    holds all local images, so ``a/dog.jpg`` and ``b/dog.jpg`` keep apart.

    Args:
        specs (Sequence[str]): The IMG arguments.

    Returns:
        list[ImageItem]: Images in argument order, each once.

    Raises:
        UsageError: For a path that does not exist or a folder without
            images.
    """
    sources: List[str] = []
    for spec in specs:
        if _URL.match(spec):
            sources.append(spec)
        elif osp.isdir(spec):
            found = list(_walk_images(spec))
            if not found:
                raise UsageError(
                    f'IMG folder {spec!r} holds no images (looked for '
                    f'{", ".join(IMG_EXTENSIONS)}, recursively).')
            sources.extend(found)
        elif spec.lower().endswith(CHECKPOINT_EXTENSIONS):
            raise UsageError(
                f'IMG {spec!r} looks like a checkpoint; the order is IMG '
                '[IMG ...] CONFIG CHECKPOINT [CHECKPOINT ...].')
        elif osp.isfile(spec):
            sources.append(spec)
        else:
            raise UsageError(f'IMG {spec!r} does not exist: give an image '
                             'file, a folder of images or a URL.')
    unique = list(dict.fromkeys(
        s if _URL.match(s) else osp.abspath(s) for s in sources))
    local = [s for s in unique if not _URL.match(s)]
    root = (osp.commonpath([osp.dirname(s) for s in local])
            if local else '')
    items = []
    for source in unique:
        if _URL.match(source):
            rel = osp.basename(source.split('?')[0]) or 'image.jpg'
        else:
            rel = osp.relpath(source, root)
        items.append(ImageItem(source, rel))
    return items


def output_path(item: ImageItem, out_dir: str) -> str:
    """Where the picture of ``item`` goes under ``out_dir``.

    The image's relative path is kept, and so is its extension when
    OpenCV writes colour images in that format (``.pgm`` is grey only, so
    ``dog.pgm`` becomes ``dog.pgm.png``).
    """
    rel = item.rel_path
    if not rel.lower().endswith(WRITE_EXTENSIONS):
        rel += '.png'
    return osp.join(out_dir, rel)


def with_image_extension(path: str) -> str:
    """``path``, with ``.jpg`` added when it has no image extension.

    MMYOLO's documentation writes ``--out-file featmap_backbone``.
    """
    return path if path.lower().endswith(WRITE_EXTENSIONS) else path + '.jpg'


# -- configs --
def _config_root(package: str) -> Optional[str]:
    """The folder of a package's installed configs, if it has one."""
    # find_spec locates the package without importing it (mmengine's
    # get_installed_path goes through the deprecated pkg_resources).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = osp.join(list(spec.submodule_search_locations)[0], '.mim',
                    'configs')
    return root if osp.isdir(root) else None


def closest_names(name: str, names: Sequence[str], n: int = 3) -> List[str]:
    """Names closest to ``name``, best first.

    Words (split at ``_``, ``-`` and ``.``) in common count first, so a
    name with two words swapped (``fast_syncbn`` for ``syncbn_fast``)
    finds its original; character similarity breaks ties.
    """
    words = set(re.split(r'[_.-]', name))

    def score(other: str) -> Tuple[float, float]:
        other_words = set(re.split(r'[_.-]', other))
        shared = len(words & other_words) / len(words | other_words)
        return shared, difflib.SequenceMatcher(None, name, other).ratio()

    ranked = sorted(names, key=score, reverse=True)
    return [c for c in ranked[:n] if max(score(c)) >= 0.5]


def _close_configs(path: str) -> List[str]:
    """Existing config names close to a missing ``path``."""
    folder, name = osp.split(path)
    candidates: List[Tuple[str, str]] = []
    if osp.isdir(folder or '.'):
        candidates += [(n, osp.join(folder, n))
                       for n in os.listdir(folder or '.') if n.endswith('.py')]
    # 'configs/yolov5/x.py' written as in a package's own repository:
    # look for the same sub-folder among the installed packages' configs.
    sub = osp.basename(folder)
    for package in CONFIG_PACKAGES:
        root = _config_root(package)
        if sub and root and osp.isdir(osp.join(root, sub)) and not (
                osp.isdir(folder) and osp.samefile(folder,
                                                   osp.join(root, sub))):
            candidates += [(n, f'{package}::{sub}/{n}')
                           for n in os.listdir(osp.join(root, sub))
                           if n.endswith('.py')]
    lookup = dict((n, full) for n, full in reversed(candidates))
    return [lookup[n] for n in closest_names(name, list(lookup))]


def _shipped_config(path: str) -> Optional[str]:
    """``configs/...`` as OpenMMLab documentation writes it, relative to a
    codebase's checkout, found in the installed package that ships it.

    Only an exact relative path in exactly one installed package counts, so
    the file is the one the documentation means.
    """
    parts = osp.normpath(path).split(os.sep)
    if 'configs' not in parts:
        return None
    rel = osp.join(*parts[parts.index('configs') + 1:])
    found = [
        osp.join(root, rel) for root in map(_config_root, CONFIG_PACKAGES)
        if root is not None and osp.isfile(osp.join(root, rel))
    ]
    return found[0] if len(found) == 1 else None


def resolve_config(spec: str) -> str:
    """The config file that ``spec`` names.

    Args:
        spec (str): A path, or ``package::relative/path.py`` for a config
            shipped in an installed package (mmdet, mmyolo, mmseg, ...). A
            ``configs/...`` path that does not exist here but exists in
            exactly one installed package (as the codebases' documentation
            writes them) is taken from that package.

    Returns:
        str: An existing file path.

    Raises:
        UsageError: If there is no such config; the message suggests the
            closest existing config names.
    """
    path = spec
    if '::' in spec:
        package, rel = spec.split('::', 1)
        if package not in CONFIG_PACKAGES:
            raise UsageError(
                f'CONFIG {spec!r}: unknown package {package!r}; '
                f'package::path works for {", ".join(CONFIG_PACKAGES)}.')
        root = _config_root(package)
        if root is None:
            raise UsageError(f'CONFIG {spec!r}: {package} is not installed '
                             '(or ships no configs).')
        path = osp.join(root, rel)
    if osp.isfile(path):
        return path
    shipped = _shipped_config(path) if '::' not in spec else None
    if shipped is not None:
        return shipped
    close = _close_configs(path)
    if '::' in spec:
        package = spec.split('::', 1)[0]
        close = [c if '::' in c else f'{package}::' + osp.relpath(
            c, _config_root(package)) for c in close]
    hint = (f' Did you mean: {", ".join(close)}?' if close else '')
    raise UsageError(f'CONFIG {spec!r} does not exist.{hint}')


# -- checkpoints --
def natural_key(path: str) -> list:
    """Sort key that orders ``epoch_2`` before ``epoch_10``."""
    return [int(part) if part.isdigit() else part
            for part in re.split(r'(\d+)', path)]


def expand_checkpoints(specs: Sequence[str]) -> List[str]:
    """Expand checkpoint arguments into an ordered list of files.

    Globs are expanded and sorted by the numbers in their names; a folder
    stands for its ``epoch_*.pth`` and ``iter_*.pth``. When every
    checkpoint is an ``epoch_N.pth`` (or every one an ``iter_N.pth``), the
    whole list is ordered by N, which also fixes a shell's lexical glob
    order; otherwise the given order is kept.

    Raises:
        UsageError: For a missing file, or a glob or folder matching none.
    """
    found: List[str] = []
    for spec in specs:
        if is_glob(spec):
            matches = sorted(glob.glob(spec), key=natural_key)
            if not matches:
                raise UsageError(f'CHECKPOINT glob {spec!r} matches no file.')
            found.extend(matches)
        elif osp.isdir(spec):
            matches = sorted(
                glob.glob(osp.join(spec, 'epoch_*.pth')) +
                glob.glob(osp.join(spec, 'iter_*.pth')), key=natural_key)
            if not matches:
                raise UsageError(f'CHECKPOINT folder {spec!r} holds no '
                                 'epoch_*.pth or iter_*.pth.')
            found.extend(matches)
        elif osp.isfile(spec) or _URL.match(spec):
            found.append(spec)
        else:
            raise UsageError(_missing_checkpoint_message(spec))
    found = list(dict.fromkeys(found))
    kinds = [_NUMBERED_CKPT.match(osp.basename(p)) for p in found]
    if all(kinds) and len({k.group(1) for k in kinds}) == 1:
        found.sort(key=lambda p: int(
            _NUMBERED_CKPT.match(osp.basename(p)).group(2)))
    return found


def _missing_checkpoint_message(spec: str) -> str:
    folder = osp.dirname(spec) or '.'
    hint = ''
    if osp.isdir(folder):
        names = [n for n in os.listdir(folder) if n.endswith('.pth')]
        close = closest_names(osp.basename(spec), names)
        if close:
            hint = (' Did you mean: ' +
                    ', '.join(osp.join(osp.dirname(spec), n) for n in close)
                    + '?')
    return f'CHECKPOINT {spec!r} does not exist.{hint}'


def checkpoint_labels(paths: Sequence[str]) -> List[str]:
    """Short distinct names for checkpoints, used in titles and files.

    The file stem (``epoch_12``) when stems are distinct, else the path
    relative to the checkpoints' common folder (``run_a/epoch_12``).
    """
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    local = [osp.abspath(p) for p in paths]
    root = osp.commonpath([osp.dirname(p) for p in local])
    return [osp.splitext(osp.relpath(p, root))[0] for p in local]
