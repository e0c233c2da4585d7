"""The memory layout a probe pass on the CPU feeds its input in.

PyTorch's CPU convolutions (oneDNN) run an image batch stored channels-last
faster than one in the default layout, and every layer after the first
keeps the layout it was given; the values are the same to float rounding.
A model whose forward cannot take such a tensor (a ``view`` that needs the
default strides) raises, and the pass runs again in the default layout,
which :class:`ProbeLayout` then keeps for the run.
"""
from typing import Any, Callable, Dict

import torch
from mmengine.logging import print_log


def channels_last_eligible(inputs: Any) -> bool:
    """Whether ``inputs`` is a CPU float batch of images (N, C, H, W) not
    already channels-last."""
    return (isinstance(inputs, torch.Tensor) and inputs.dim() == 4
            and inputs.device.type == 'cpu' and inputs.is_floating_point()
            and not inputs.is_contiguous(memory_format=torch.channels_last))


class ProbeLayout:
    """Runs probe passes with a CPU input in channels-last layout, falling
    back for good to the default layout where the model raises on it and
    not on the default one.

    Attributes:
        channels_last (bool): Whether passes still try channels-last.
    """

    def __init__(self) -> None:
        self.channels_last = True

    def forward(self, call: Callable[..., Any], kwargs: Dict[str, Any],
                discard: Callable[[], Any]) -> Any:
        """``call(**kwargs)``, its input channels-last where eligible.

        Args:
            call (callable): The model call (``mode`` bound).
            kwargs (dict): ``inputs`` and the rest, as the probe gives them.
            discard (callable): Drops what a failed pass captured.
        """
        inputs = kwargs.get('inputs')
        if not (self.channels_last and channels_last_eligible(inputs)):
            return call(**kwargs)
        fast = dict(
            kwargs,
            inputs=inputs.contiguous(memory_format=torch.channels_last))
        try:
            return call(**fast)
        except RuntimeError as error:
            discard()
            # Raises again where the layout was not the cause.
            outputs = call(**kwargs)
            self.channels_last = False
            print_log(
                'mmfeatvis: the probe pass feeds its input in the default '
                'memory layout from now on: the model raised on a '
                f'channels-last input ({type(error).__name__}: '
                f'{str(error).splitlines()[0][:200]}).', 'current')
            return outputs
