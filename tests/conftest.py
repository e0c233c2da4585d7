"""Shared fixtures: real files the tests draw on."""
import os.path as osp

import pytest


@pytest.fixture(scope='session')
def probe_image_path() -> str:
    """A real photograph (512x600) that ships with matplotlib."""
    import matplotlib
    path = osp.join(
        osp.dirname(matplotlib.__file__), 'mpl-data', 'sample_data',
        'grace_hopper.jpg')
    assert osp.isfile(path)
    return path
