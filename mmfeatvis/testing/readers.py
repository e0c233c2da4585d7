"""Read back what the Visualizer backends wrote, for tests and checks."""
import glob
import json
import os.path as osp
from typing import Dict, List, Tuple


def read_tensorboard(
    log_dir: str
) -> Tuple[Dict[str, List[int]], Dict[str, List[Tuple[int, float]]]]:
    """Load image and scalar summaries with TensorBoard's own reader.

    Args:
        log_dir (str): A folder holding ``events.out.tfevents.*`` files
            (``vis_data`` of an mmengine run).

    Returns:
        tuple: ``images`` (tag to sorted steps) and ``scalars`` (tag to
        ``(step, value)`` pairs in step order).
    """
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    if not glob.glob(osp.join(log_dir, 'events.out.tfevents.*')):
        raise FileNotFoundError(f'No TensorBoard event file in {log_dir!r}.')
    accumulator = EventAccumulator(
        log_dir, size_guidance={
            'images': 0,
            'scalars': 0
        })
    accumulator.Reload()
    tags = accumulator.Tags()
    images = {
        tag: sorted(event.step for event in accumulator.Images(tag))
        for tag in tags['images']
    }
    scalars = {
        tag: sorted(
            (event.step, event.value) for event in accumulator.Scalars(tag))
        for tag in tags['scalars']
    }
    return images, scalars


def read_tensorboard_image(log_dir: str, tag: str, step: int):
    """Decode one image summary to an RGB array."""
    import cv2
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    accumulator = EventAccumulator(log_dir, size_guidance={'images': 0})
    accumulator.Reload()
    for event in accumulator.Images(tag):
        if event.step == step:
            data = np.frombuffer(event.encoded_image_string, np.uint8)
            return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR),
                                cv2.COLOR_BGR2RGB)
    raise KeyError(f'No image {tag!r} at step {step} in {log_dir!r}.')


def read_scalar_log(log_dir: str) -> List[dict]:
    """Records of mmengine's ``LocalVisBackend`` ``scalars.json``."""
    path = osp.join(log_dir, 'scalars.json')
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
