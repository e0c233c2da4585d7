# The demo: YOLOv5-n learns drawn shapes on a CPU while FeatmapVisHook
# records the backbone and neck maps of the first validation image, and
# why the detector predicts its three best boxes (LayerCAM of the neck).
_base_ = ['./yolov5_n_shapes.py', '../_base_/featvis.py']

custom_hooks = [
    *_base_.custom_hooks,
    dict(
        _base_.featvis_hook,
        target_layers=['backbone', 'neck'],
        interval=20,  # iterations; the step-0 baseline comes first
        after_val=True,
        score_thr=0.3,
        cam=dict(method='layercam', topk=3, score_thr=0.3))
]
visualizer = dict(vis_backends=_base_.featvis_vis_backends)
