# mmfeatvis snippet: inherit it next to a model config, then add the hook to
# that config's own hooks (model configs define custom_hooks and
# visualizer themselves, and mmengine forbids one key in two bases):
#
#   _base_ = ['mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py',
#             '<mmfeatvis>/configs/_base_/featvis.py']
#   custom_hooks = [*_base_.custom_hooks, _base_.featvis_hook]  # or [hook]
#   visualizer = dict(vis_backends=_base_.featvis_vis_backends)
#
# Options of the hook: mmfeatvis/hooks/featmap_vis_hook.py. Change them
# from the command line, e.g. --cfg-options custom_hooks.1.interval=100.
custom_imports = dict(imports=['mmfeatvis'], allow_failed_imports=False)

featvis_hook = dict(
    type='FeatmapVisHook',
    probe=None,  # None: the first validation image; or a path, or a list
    target_layers=None,  # None: backbone and neck, those the model has
    interval=50,
    by_epoch=False,
    channel_reduction='select_max',
    topk=4,
    arrangement=(2, 2),
    value_range='adaptive',  # kept, re-anchored when it no longer fits
    before_train=True,
    after_val=False,
    draw_pred=True,
    score_thr=0.3,
    with_stats=True,
    per_layer=False)  # True: also one image per layer, at full size

# JPEG files (image_format='png': PNG) under
# work_dir/<timestamp>/vis_data/vis_image, TensorBoard
# events under work_dir/<timestamp>/vis_data.
featvis_vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]
