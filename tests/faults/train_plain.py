"""Worker for the signal tests: a Runner training of the plain test model
with FeatmapVisHook, run in its own process so that a test can interrupt
it as a user would (Ctrl-C, ``kill``).

    python tests/faults/train_plain.py WORK_DIR PROBE --max-iters 200
"""
import argparse
import json
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from conftest import plain_runner  # noqa: E402  (registers the model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('work_dir')
    parser.add_argument('probe')
    parser.add_argument('--max-iters', type=int, default=200)
    parser.add_argument('--hook', default='{}',
                        help='More hook options, as JSON.')
    args = parser.parse_args()
    # As in a terminal: a shell that starts a job in the background without
    # job control (CI scripts) hands it Ctrl-C ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = dict(type='FeatmapVisHook', probe=args.probe,
                target_layers=['backbone', 'tokens'], interval=1,
                per_layer=True,
                **json.loads(args.hook))
    runner = plain_runner(args.work_dir, [hook], max_iters=args.max_iters)
    print(f'log_dir={runner.log_dir}', flush=True)
    runner.train()


if __name__ == '__main__':
    main()
