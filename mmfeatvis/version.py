"""Version of mmfeatvis, kept in one place for setup.py and runtime checks."""

__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Split a version string such as ``'0.1.0rc1'`` into a comparable tuple.

    Args:
        version_str (str): The version string.

    Returns:
        tuple: Integers for the numeric parts, followed by the pre-release tag.
    """
    info = []
    for part in version_str.split('.'):
        if part.isdigit():
            info.append(int(part))
        else:
            digits = ''.join(ch for ch in part if ch.isdigit())
            info.append(int(digits) if digits else 0)
            info.append(part[len(digits):])
    return tuple(info)


version_info = parse_version_info(__version__)
