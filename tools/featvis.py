"""Visualize feature maps of an OpenMMLab model (MMYOLO's featmap demo).

Usage: python tools/featvis.py IMG [IMG ...] CONFIG CHECKPOINT [options];
see docs/cli.md or --help. The same command is installed as ``mmfeatvis``.
"""
import sys

from mmfeatvis.cli import main

if __name__ == '__main__':
    sys.exit(main())
