# mmyolo's YOLOv5-s as shipped, with feature maps of the first validation
# image every 50 iterations in the local and TensorBoard backends.
_base_ = [
    'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py',
    '../_base_/featvis.py'
]

custom_hooks = [*_base_.custom_hooks, _base_.featvis_hook]
visualizer = dict(vis_backends=_base_.featvis_vis_backends)
