"""The frozen TorchScript model the handler serves answers as the eager one, at every batch size."""

from __future__ import annotations

import pytest
import torch

from food_rotation.rotation_model import RotationNet, as_batch, for_inference


@pytest.mark.parametrize(("arch", "turn_averaging"), [("efficientnet_lite0", True), ("mobilenet_v3_small", False)])
def test_frozen_model_answers_as_the_eager_one_at_any_batch_size(arch, turn_averaging):
    torch.manual_seed(0)
    eager = RotationNet(arch, turn_averaging).eval()
    served = RotationNet(arch, turn_averaging)
    served.load_state_dict(eager.state_dict())
    frozen = for_inference(served, torch.device("cpu"), True, freeze=True, image_size=96)
    assert isinstance(frozen, torch.jit.ScriptModule)
    for size in (1, 3):
        pixels = [torch.randint(0, 256, (3, 96, 96), dtype=torch.uint8) for _ in range(size)]
        with torch.inference_mode():
            expected = eager(torch.stack(pixels)).softmax(dim=1)
            got = frozen(as_batch(pixels, torch.device("cpu"), True)).softmax(dim=1)
        assert got.shape == (size, 4) and torch.allclose(got, expected, atol=1e-5)
