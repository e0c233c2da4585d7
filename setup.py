"""Packaging for mmfeatvis, in the style of OpenMMLab projects."""
from setuptools import find_packages, setup


def readme() -> str:
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version() -> str:
    namespace: dict = {}
    with open('mmfeatvis/version.py', encoding='utf-8') as f:
        exec(compile(f.read(), 'mmfeatvis/version.py', 'exec'), namespace)
    return namespace['__version__']


# torch stays unpinned so that users keep the build (CUDA or CPU) they already have.
CORE_REQUIRES = [
    'mmengine>=0.10.0,<1.0.0',
    'mmcv>=2.0.0rc4,<2.2.0',
    'numpy',
    'opencv-python',
    'pillow',  # animated GIFs of checkpoint series
    'torch',
]
EXTRAS_REQUIRE = {
    'det': ['mmdet>=3.0.0,<3.4.0', 'mmyolo>=0.6.0'],
    'seg': ['mmsegmentation>=1.0.0', 'ftfy', 'regex'],
    # google-crc32c: TensorBoard's writer checksums records in pure Python
    # without it (see mmfeatvis.engine_internals.use_compiled_crc32c).
    'tensorboard': ['tensorboard', 'google-crc32c'],
    # torchcam: the reference the CAM methods are tested against.
    'tests': ['pytest', 'flake8', 'isort', 'pycocotools', 'torchcam==0.5.0'],
}
EXTRAS_REQUIRE['all'] = sorted(
    {req for name in ('det', 'seg', 'tensorboard') for req in EXTRAS_REQUIRE[name]})

setup(
    name='mmfeatvis',
    version=get_version(),
    description='Feature-map visualization hook and tool for OpenMMLab models',
    long_description=readme(),
    long_description_content_type='text/markdown',
    keywords='computer vision, visualization, feature map, openmmlab',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'benchmarks')),
    include_package_data=True,
    python_requires='>=3.8',
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
    ],
    license='Apache License 2.0',
    install_requires=CORE_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={'console_scripts': ['mmfeatvis=mmfeatvis.cli:main']},
    zip_safe=False,
)
