"""A real photograph for probes in tests, benchmarks and demos."""
import os.path as osp


def sample_photo_path() -> str:
    """Path of ``grace_hopper.jpg`` (512x600 RGB), which ships with
    matplotlib, so no download is needed.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib
    return osp.join(
        osp.dirname(matplotlib.__file__), 'mpl-data', 'sample_data',
        'grace_hopper.jpg')
