"""One test per private attribute of mmengine and TensorBoard that
mmfeatvis uses (all through ``mmfeatvis.engine_internals``): after an upgrade
that renames one, its test here fails, not a training run."""
from conftest import plain_runner
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop
from mmengine.visualization import (LocalVisBackend, TensorboardVisBackend,
                                    Visualizer)

from mmfeatvis import engine_internals as internals


def _visualizer(tmp_path) -> Visualizer:
    return Visualizer(
        name=f'internals_{tmp_path.name}',
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')],
        save_dir=str(tmp_path))


def test_visualizer_vis_backends(tmp_path):
    found = internals.vis_backends(_visualizer(tmp_path))
    assert [type(b) for b in found.values()] == [LocalVisBackend,
                                                 TensorboardVisBackend]
    assert internals.vis_backends(Visualizer(name='internals_none')) == {}


def test_local_image_dir(tmp_path):
    local = _visualizer(tmp_path).get_backend('LocalVisBackend')
    assert internals.local_image_dir(local) == str(tmp_path / 'vis_data' /
                                                   'vis_image')


def test_tensorboard_file_writer(tmp_path):
    board = _visualizer(tmp_path).get_backend('TensorboardVisBackend')
    writer = internals.tensorboard_file_writer(board)
    assert callable(writer.add_summary)
    board.close()


def test_tensorboards_record_checksum_is_replaced():
    from tensorboard.summary.writer import record_writer
    assert internals.use_compiled_crc32c()
    assert record_writer.masked_crc32c is internals.masked_crc32c


def test_runner_train_loop_while_training(tmp_path, probe_image_path):
    seen = []

    class LoopProbe(Hook):

        def before_run(self, runner):
            seen.append(internals.built_train_loop(runner))

    runner = plain_runner(str(tmp_path), [LoopProbe()], max_iters=1)
    runner.train()
    assert isinstance(seen[0], IterBasedTrainLoop)
    assert seen[0] is runner.train_loop


def test_load_checkpoint_revises_module_prefix():
    revised = internals.revised_keys({'module.conv.weight': 1, 'head.b': 2})
    assert revised == {'conv.weight': 1, 'head.b': 2}
