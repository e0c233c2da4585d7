"""Generate the shapes detection data set used by the demo and the tests.

Example:
    python tools/misc/make_shapes_dataset.py work_dirs/demo/data \
        --num-train 128 --num-val 32 --size 256 320
"""
import argparse
from typing import List, Optional

from mmfeatvis.testing import SHAPES, make_shapes_dataset
from mmfeatvis.testing.shapes import DEFAULT_CLASSES, DEFAULT_IMAGE_SIZE


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Write a COCO-format data set of drawn shapes: '
        'OUT_DIR/{train,val}/*.jpg and OUT_DIR/annotations/{train,val}.json')
    parser.add_argument('out_dir', help='folder to write the data set into')
    parser.add_argument(
        '--num-train', type=int, default=128, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=32, help='validation images')
    parser.add_argument(
        '--size',
        type=int,
        nargs='+',
        default=list(DEFAULT_IMAGE_SIZE),
        metavar='N',
        help='image size: one side, or height and width (default: '
        f'{DEFAULT_IMAGE_SIZE[0]} {DEFAULT_IMAGE_SIZE[1]})')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--classes',
        nargs='+',
        default=list(DEFAULT_CLASSES),
        choices=SHAPES,
        metavar='SHAPE',
        help=f"shapes to draw, one class each, of: {', '.join(SHAPES)}")
    parser.add_argument(
        '--ext',
        default='.jpg',
        choices=('.jpg', '.png'),
        help='image format')
    args = parser.parse_args(argv)
    if len(args.size) > 2:
        parser.error('--size takes one or two integers')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    """Generate the data set and print where it went."""
    args = parse_args(argv)
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    info = make_shapes_dataset(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=size,
        seed=args.seed,
        classes=args.classes,
        img_ext=args.ext)
    print(f'{args.num_train} train and {args.num_val} val images of '
          f"{', '.join(info['classes'])} in {info['data_root']}")


if __name__ == '__main__':
    main()
