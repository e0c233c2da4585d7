# YOLOv5-n trained from scratch on generated shapes, on a CPU, in minutes.
#
# Make the data first (the paths below are relative to the repository root):
#   python tools/misc/make_shapes_dataset.py work_dirs/demo/data
# Derived paths are fixed when this file is read, so data elsewhere needs
# all of these overridden (mmfeatvis.testing.shapes_cfg_options builds them):
#   train_dataloader.dataset.data_root, val_dataloader.dataset.data_root,
#   test_dataloader.dataset.data_root, val_evaluator.ann_file,
#   test_evaluator.ann_file
# Hooks go into custom_hooks, which holds only the EMA hook of the base
# config; a config inheriting this one can append to it.
_base_ = 'mmyolo::yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py'

# ------------------------------ data ------------------------------------
data_root = 'work_dirs/demo/data/'
class_name = ('circle', 'square', 'triangle')
num_classes = len(class_name)
metainfo = dict(
    classes=class_name,
    palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75)])
# The generated images are 320x256 (WxH): at this scale they are not
# resized, and the letterbox padding shows in the feature maps.
img_scale = (320, 320)  # width, height
train_batch_size_per_gpu = 8
# On two cores a loader process would compete with torch's two threads;
# loading takes under a tenth of a step anyway.
train_num_workers = 0
persistent_workers = False

# ---------------------------- schedule ----------------------------------
max_epochs = 10
save_checkpoint_intervals = 2
base_lr = 0.004
warmup_epochs = 1

# -------------------------------- model ---------------------------------
# YOLOv5 scales its loss weights by the number of classes and input size.
num_det_layers = _base_.num_det_layers
model = dict(
    # No process group on a CPU; the detector would only convert BN to
    # SyncBN under one, but say so rather than rely on it.
    use_syncbn=False,
    bbox_head=dict(
        head_module=dict(num_classes=num_classes),
        loss_cls=dict(loss_weight=_base_.loss_cls_weight *
                      (num_classes / 80 * 3 / num_det_layers)),
        loss_obj=dict(loss_weight=_base_.loss_obj_weight *
                      ((img_scale[0] / 640)**2 * 3 / num_det_layers))),
    test_cfg=dict(nms_pre=1000, max_per_img=100))

# -------------------------------- pipelines -----------------------------
# The base pipelines were built from its 640 img_scale, so they are
# rewritten. Albu is left out (albumentations is not installed), and so is
# Mosaic, which loads four images per sample: letterbox plus a mild affine
# keeps training close to what validation sees.
pre_transform = _base_.pre_transform
# Shared by training and testing, so both see the same letterboxed input.
letterbox = [
    dict(type='YOLOv5KeepRatioResize', scale=img_scale),
    dict(
        type='LetterResize',
        scale=img_scale,
        allow_scale_up=False,
        pad_val=dict(img=114)),
]
train_pipeline = [
    *pre_transform,
    *letterbox,
    dict(
        type='YOLOv5RandomAffine',
        max_rotate_degree=0.0,
        max_shear_degree=0.0,
        scaling_ratio_range=(0.7, 1.3),
        border_val=(114, 114, 114)),
    dict(type='YOLOv5HSVRandomAug'),
    dict(type='mmdet.RandomFlip', prob=0.5),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'flip',
                   'flip_direction'))
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    *letterbox,
    dict(type='LoadAnnotations', with_bbox=True, _scope_='mmdet'),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'pad_param'))
]

train_dataloader = dict(
    batch_size=train_batch_size_per_gpu,
    num_workers=train_num_workers,
    persistent_workers=persistent_workers,
    pin_memory=False,
    # Inheriting across packages (mmyolo::) tags the base's typed dicts with
    # _scope_, and the Runner passes every key of collate_fn on to the
    # function, which then fails; a fresh dict carries no tag.
    collate_fn=dict(_delete_=True, type='yolov5_collate'),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
        batch_shapes_cfg=dict(img_size=img_scale[0])))
test_dataloader = val_dataloader

val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

# ----------------------------- optimisation -----------------------------
# AdamW, because YOLOv5's SGD recipe is tuned for 300 epochs: here 160
# steps reach a bbox mAP of 0.3. The YOLOv5 constructor applies
# weight_decay to conv weights only; BN weights and biases get AdamW's
# default (0.01).
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=base_lr,
        weight_decay=0.05,
        batch_size_per_gpu=train_batch_size_per_gpu))

default_hooks = dict(
    # Warm up over one epoch instead of at least 1000 iterations, and from
    # a bias lr near base_lr: YOLOv5's 0.1 suits SGD, not AdamW.
    param_scheduler=dict(
        max_epochs=max_epochs,
        warmup_epochs=warmup_epochs,
        warmup_mim_iter=0,
        warmup_bias_lr=base_lr,
        # Linear decay to a tenth; YOLOv5's hundredth suits 300 epochs.
        lr_factor=0.1),
    checkpoint=dict(
        interval=save_checkpoint_intervals, save_best=None,
        max_keep_ckpts=-1),
    logger=dict(interval=4))
log_processor = dict(window_size=4)

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)

vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]
visualizer = dict(vis_backends=vis_backends)

randomness = dict(seed=0)
