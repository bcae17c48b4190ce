import numpy as np
import pytest

from food_rotation.rotation_model import CLASSES
from food_rotation.training.rotation_data import RotatedPhotos, find_photos, split_by_photo
from tests.photos import encode, rotated, scene


@pytest.fixture
def photo_folder(tmp_path):
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    for index, (folder, suffix, fmt) in enumerate([("", ".jpg", "JPEG"), ("nested", ".PNG", "PNG"),
                                                   ("nested/deeper", ".webp", "WEBP"), ("", ".jpeg", "JPEG")]):
        (tmp_path / folder / f"photo{index}{suffix}").write_bytes(encode(scene(index), fmt))
    (tmp_path / "notes.txt").write_text("not a photo")
    return tmp_path


def test_photos_are_found_recursively_and_only_photos(photo_folder):
    found = find_photos(photo_folder)
    assert sorted(p.name for p in found) == ["photo0.jpg", "photo1.PNG", "photo2.webp", "photo3.jpeg"]
    assert found == sorted(found)  # a stable order: the split must not depend on the file system


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_photos(tmp_path)


def test_split_is_by_photo_and_reproducible(tmp_path):
    photos = [tmp_path / f"p{i}.jpg" for i in range(100)]
    train, val = split_by_photo(photos, 0.2, seed=3)
    assert len(val) == 20 and not set(train) & set(val) and set(train) | set(val) == set(photos)
    assert split_by_photo(photos, 0.2, seed=3) == (train, val)
    assert split_by_photo(photos, 0.2, seed=4) != (train, val)


def test_every_rotated_copy_of_a_photo_stays_on_its_side(photo_folder):
    train, val = split_by_photo(find_photos(photo_folder), 0.25, seed=0)
    train_set, val_set = RotatedPhotos(train, 32), RotatedPhotos(val, 32)
    assert len(train_set) == 4 * len(train) and len(val_set) == 4 * len(val)
    # item 4*i + k comes from photo i: no photo contributes to both sides
    assert {train_set.photos[i // 4] for i in range(len(train_set))}.isdisjoint(
        {val_set.photos[i // 4] for i in range(len(val_set))})


def test_labels_are_the_turn_that_makes_the_sample_upright(photo_folder):
    photo = photo_folder / "photo0.jpg"  # scene(0)
    dataset = RotatedPhotos([photo], 64)
    for label, degree in enumerate(CLASSES):
        pixels, got = dataset[label]
        assert got == label and pixels.shape == (3, 64, 64)
        reference = np.asarray(rotated(scene(0), degree).resize((64, 64)), dtype=np.float32)
        difference = np.abs(pixels.permute(1, 2, 0).numpy().astype(np.float32) - reference).mean()
        assert difference < 12, (degree, float(difference))
