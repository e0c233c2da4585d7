# mmdet's Faster R-CNN as shipped, with the maps of the backbone stages,
# the FPN levels and the RPN's shared conv (one map per pyramid level).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/featvis.py'
]

custom_hooks = [
    dict(
        _base_.featvis_hook,
        target_layers=['backbone.layer*', 'neck', 'rpn_head.rpn_conv'])
]
visualizer = dict(vis_backends=_base_.featvis_vis_backends)
