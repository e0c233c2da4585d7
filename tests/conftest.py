"""Shared fixtures: real files the tests draw on."""
import os.path as osp

import pytest


@pytest.fixture(scope='session')
def probe_image_path() -> str:
    """A real photograph (512x600) that ships with matplotlib."""
    from mmfeatvis.testing import sample_photo_path
    path = sample_photo_path()
    assert osp.isfile(path)
    return path
