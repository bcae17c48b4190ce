"""The student's training data: the four turns of an upright view get the labels and the teacher's answers that
the rest of the project gives them (training/rotation_data.py turns photos with PIL; the student turns tensors)."""

from __future__ import annotations

import torch
from PIL import Image

from food_rotation.rotation_model import CLASSES
from food_rotation.training.distill_student import distillation_loss, turned
from food_rotation.training.rotation_data import RotatedPhotos


def test_a_turned_view_is_labelled_as_the_data_set_labels_that_turn(tmp_path):
    pixels = torch.randint(0, 256, (24, 24, 3), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(tmp_path / "upright.png")
    photos = RotatedPhotos([tmp_path / "upright.png"], image_size=24)
    upright, label = photos[0]
    assert label == 0
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])  # the teacher: upright, surely
    images, targets, labels = turned(upright.unsqueeze(0), scores)
    for k in range(len(CLASSES)):
        expected, expected_label = photos[labels[k].item()]
        assert expected_label == labels[k] == -k % 4
        assert torch.equal(images[k], expected)  # the tensor turn is the data set's PIL turn
        assert targets[k].argmax() == labels[k]  # and the teacher's answer moved with it


def test_the_loss_is_the_cross_entropy_alone_at_alpha_0_and_zero_when_the_student_copies_the_teacher():
    logits = torch.tensor([[2.0, 0.5, 0.1, -1.0]])
    labels = torch.tensor([0])
    hard = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.isclose(distillation_loss(logits, logits * 7, labels, tau=2.0, alpha=0.0), hard)
    assert distillation_loss(logits, logits, labels, tau=2.0, alpha=1.0).abs() < 1e-6
