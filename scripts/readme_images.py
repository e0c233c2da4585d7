"""Make every picture the README shows from the output of ``make demo``.

Run after ``make demo`` (``make readme-images`` does both in turn):

- ``demo_hook_step0.jpg`` and ``demo_hook_final.jpg``: the hook's overview
  of the probe at the step-0 baseline and at the last firing;
- ``demo_hook_cam.jpg``: the hook's CAMs of the probe at the last
  firing;
- ``demo_featvis_strip.jpg`` and ``demo_featvis_series.gif``: the
  checkpoint series of ``tools/featvis.py``;
- ``demo_tensorboard.png``: TensorBoard's Images tab on the demo's run,
  served by TensorBoard and taken by headless Chromium (Debian's
  ``chromium``), as a user opens it.

Example::

    python scripts/readme_images.py work_dirs/demo docs/images
"""
import argparse
import glob
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def hook_overviews(demo_dir: str) -> dict:
    """Step -> path of the hook's overview images of the first probe."""
    run_dir = sorted(glob.glob(osp.join(demo_dir, '2*', 'vis_data')))[-1]
    steps = {}
    for path in glob.glob(osp.join(run_dir, 'vis_image',
                                   'featvis_*_overview_*.jpg')):
        steps[int(re.search(r'_(\d+)\.jpg$', path).group(1))] = path
    if not steps:
        sys.exit(f'no overview images under {run_dir}; run `make demo`.')
    return steps


def screenshot_tensorboard(log_dir: str, out_path: str) -> None:
    """TensorBoard's Images tab for ``log_dir``, as Chromium draws it."""
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None:
        sys.exit('chromium is not installed (apt-get install chromium).')
    tensorboard = osp.join(osp.dirname(sys.executable), 'tensorboard')
    port = free_port()
    server = subprocess.Popen(
        [tensorboard, '--logdir', log_dir, '--host', '127.0.0.1', '--port',
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + 'data/runs', timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f'--user-data-dir={profile}',
                 '--window-size=1400,1100', '--virtual-time-budget=20000',
                 f'--screenshot={osp.abspath(out_path)}',
                 url + '?darkMode=false#images'],
                check=True, timeout=120, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('demo_dir', nargs='?', default='work_dirs/demo')
    parser.add_argument('out_dir', nargs='?', default='docs/images')
    parser.add_argument('--no-screenshot', action='store_true')
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    steps = hook_overviews(args.demo_dir)
    first, last = min(steps), max(steps)
    copies = {
        steps[first]: 'demo_hook_step0.jpg',
        steps[last]: 'demo_hook_final.jpg',
        steps[last].replace('_overview_', '_cam_layercam_'):
        'demo_hook_cam.jpg',
    }
    series = sorted(glob.glob(osp.join(args.demo_dir, 'featvis', '*')))[0]
    copies[osp.join(series, 'series_strip.jpg')] = 'demo_featvis_strip.jpg'
    copies[osp.join(series, 'series.gif')] = 'demo_featvis_series.gif'
    for source, name in copies.items():
        shutil.copyfile(source, osp.join(args.out_dir, name))
        print(f'{name} <- {source}')
    print(f'hook overviews: step {first} and step {last}')
    if not args.no_screenshot:
        shot = osp.join(args.out_dir, 'demo_tensorboard.png')
        screenshot_tensorboard(args.demo_dir, shot)
        print(f'demo_tensorboard.png <- TensorBoard on {args.demo_dir}')


if __name__ == '__main__':
    main()
