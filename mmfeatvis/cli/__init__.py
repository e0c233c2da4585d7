"""Command-line interface: ``mmfeatvis`` / ``tools/featvis.py``."""
from .featvis import main, run

__all__ = ['main', 'run']
