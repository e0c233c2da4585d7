"""CAM targets chosen by model kind, on models built from the configs that
mmyolo, mmdet and mmseg ship (random weights): each box explained is one
the model itself predicts, each class one it segments."""
import numpy as np
import pytest
import torch

from mmfeatvis.capture import FeatureCapture, isolated_inference
from mmfeatvis.cli.inputs import resolve_config
from mmfeatvis.cli.model import build_model, load_config
from mmfeatvis.options import CamOptions
from mmfeatvis.orchestrator.cam import CamOrchestrator
from mmfeatvis.probe import ProbeBuilder

# Builds detectors and segmentors from their shipped configs.
pytestmark = pytest.mark.slow

#: mmdet's and mmseg's test pipelines resize to 1333x800 and 2048x1024;
#: a smaller probe keeps these tests quick.
SMALL_DET_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]


def _built(spec: str):
    cfg = load_config(resolve_config(spec))
    torch.manual_seed(0)
    return cfg, build_model(cfg, 'cpu')


def _fire(model, probe, **options):
    orchestrator = CamOrchestrator(CamOptions(**options))
    orchestrator.check(model, [probe])
    cams, = orchestrator.fire(model, [probe])
    return orchestrator, cams


def _predicted_boxes(model, probe, topk: int) -> np.ndarray:
    """The model's own best ``topk`` boxes, from its predict mode."""
    with torch.no_grad():
        model.eval()
        sample, = model(**probe.model_kwargs(), mode='predict')
    instances = sample.pred_instances
    # Stable, as ties (random weights saturate some heads' scores) keep
    # the head's order when the boxes explained are chosen.
    order = instances.scores.sort(descending=True, stable=True).indices[:topk]
    return instances.bboxes[order].numpy()


def _explained_boxes(cams) -> np.ndarray:
    return np.array([panel.boxes[0][0] for panel in cams.panels])


@pytest.mark.parametrize('spec', [
    'mmyolo::yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py',
    'mmyolo::yolov6/yolov6_n_syncbn_fast_8xb32-300e_coco.py',
    'mmyolo::yolov7/yolov7_tiny_syncbn_fast_8x16b-300e_coco.py',
    'mmyolo::yolov8/yolov8_n_syncbn_fast_8xb16-500e_coco.py',
    'mmyolo::ppyoloe/ppyoloe_plus_s_fast_8xb8-80e_coco.py',
    'mmyolo::yolox/yolox_tiny_fast_8xb8-300e_coco.py',
    'mmyolo::rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py',
    'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
    'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
])
def test_dense_detectors_explain_their_own_boxes(spec, probe_image_path):
    cfg, model = _built(spec)
    pipeline = SMALL_DET_PIPELINE if spec.startswith('mmdet') else None
    builder = ProbeBuilder(cfg, pipeline=pipeline)
    probe, = builder.build(probe_image_path, model)
    orchestrator, cams = _fire(model, probe, score_thr=0.0, topk=3)
    assert orchestrator.rule.kind == 'dense detector'
    assert len(cams.panels) == 3
    # The boxes explained are the model's own best three.
    np.testing.assert_allclose(
        _explained_boxes(cams), _predicted_boxes(model, probe, 3), atol=1e-3)
    for panel in cams.panels:
        assert panel.cam.max() == pytest.approx(1.0)
    # The neck's levels are fused at the finest level's size.
    with torch.no_grad():
        levels = model.extract_feat(probe.data['inputs'])
    finest = max((tuple(f.shape[-2:]) for f in levels),
                 key=lambda hw: hw[0] * hw[1])
    assert cams.panels[0].cam.shape == finest


def _levels_reached(model, probe) -> set:
    """Which neck levels the gradients of the best 20 boxes reach."""
    orchestrator = CamOrchestrator(
        CamOptions(score_thr=0.0, topk=20, target_layers=['neck']))
    orchestrator.check(model, [probe])
    with isolated_inference(model), torch.enable_grad(), FeatureCapture(
            model, orchestrator.layer_names, keep=lambda o: o) as capture:
        outputs = orchestrator.rule.forward(model, probe)
        levels = list(capture.pop_features().values())
        targets = orchestrator.rule.targets(model, probe, outputs, None)
        assert len(targets) == 20
        reached = set()
        for target in targets:
            grads = torch.autograd.grad(
                target.score, levels, retain_graph=True, allow_unused=True)
            reached.add(
                tuple(g is not None and bool(g.abs().sum() > 0)
                      for g in grads))
    return reached


def test_a_box_gets_gradient_through_its_own_pyramid_level(probe_image_path):
    # YOLOv5's head reads each neck level on its own, and the PAFPN's
    # bottom-up path builds stride 16 and 32 from stride 8: a box's
    # target, taken at its prior, reaches its own level and those the
    # level is built from, never a later one.
    cfg, model = _built(
        'mmyolo::yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py')
    probe, = ProbeBuilder(cfg).build(probe_image_path, model)
    # Random weights: the best boxes are stride-8 ones.
    assert _levels_reached(model, probe) == {(True, False, False)}
    # Objectness raised at stride 32: the best boxes come from there.
    head = model.bbox_head.head_module
    per_anchor = 5 + head.num_classes
    with torch.no_grad():
        head.convs_pred[2].bias[4::per_anchor] += 3
    assert _levels_reached(model, probe) == {(True, True, True)}


def test_whole_class_targets_sum_their_boxes(probe_image_path):
    cfg, model = _built(
        'mmyolo::yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py')
    probe, = ProbeBuilder(cfg).build(probe_image_path, model)
    _, best = _fire(model, probe, score_thr=0.0, topk=1)
    label = best.panels[0].boxes[0][1]
    _, whole = _fire(model, probe, score_thr=0.2, classes=[label])
    panel, = whole.panels
    assert panel.title.endswith(f'(all {len(panel.boxes)})')
    assert len(panel.boxes) > 1 and {b[1] for b in panel.boxes} == {label}


@pytest.mark.parametrize('spec', [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
])
def test_two_stage_detectors_explain_boxes_by_their_roi_logit(
        spec, probe_image_path):
    cfg, model = _built(spec)
    # Random weights score every class about 1/81: keep them all.
    model.roi_head.test_cfg.score_thr = 0.0
    probe, = ProbeBuilder(
        cfg, pipeline=SMALL_DET_PIPELINE).build(probe_image_path, model)
    orchestrator, cams = _fire(model, probe, score_thr=0.0, topk=2)
    assert orchestrator.rule.kind == 'two-stage detector'
    np.testing.assert_allclose(
        _explained_boxes(cams), _predicted_boxes(model, probe, 2), atol=1e-3)
    # The RPN's proposals are detached: its layers get no gradient.
    with pytest.raises(ValueError, match=r"\['rpn_head.rpn_conv'\]"):
        _fire(model, probe, target_layers=['rpn_head.rpn_conv'])


def test_segmentors_explain_their_most_present_classes(probe_image_path):
    cfg, model = _built(
        'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(256, 200), keep_ratio=True),
        dict(type='PackSegInputs'),
    ]
    probe, = ProbeBuilder(cfg, pipeline=pipeline).build(probe_image_path,
                                                        model)
    orchestrator, cams = _fire(model, probe, topk=2)
    assert orchestrator.rule.kind == 'segmentor'
    with torch.no_grad():
        model.eval()
        sample, = model(**probe.model_kwargs(), mode='predict')
    predicted = sample.pred_sem_seg.data[0]
    counts = torch.bincount(predicted.flatten(), minlength=19)
    names = [p.title.split()[0] for p in cams.panels]
    assert names == [str(int(i)) for i in counts.argsort(descending=True)[:2]]
    share = int(cams.panels[0].title.split()[1].rstrip('%'))
    assert abs(share - 100 * counts.max() / counts.sum()) < 2


def test_a_detector_kind_without_a_rule_is_named():
    _, model = _built('mmdet::detr/detr_r50_8xb2-150e_coco.py')
    with pytest.raises(ValueError,
                       match=r'no CAM target rule for DETR \(DETRHead\)'):
        CamOrchestrator(CamOptions()).resolve(model)
