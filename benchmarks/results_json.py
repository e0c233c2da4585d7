"""The JSON file that benchmark scripts write with ``--json``."""
import json
import platform
from typing import Any, List

import torch


def write_rows(path: str, rows: List[Any]) -> None:
    """Write ``rows`` with the machine, processor and torch version."""
    with open(path, 'w') as f:
        json.dump(dict(machine=platform.platform(),
                       processor=platform.processor(),
                       torch=torch.__version__, rows=rows),
                  f, indent=2, default=str)
