"""TorchServe handler: how far is each photo turned, and (on request) the photo made upright.

Lifecycle as TorchServe drives it: `initialize` once per worker, then `handle` per batch, which runs
`preprocess -> inference -> postprocess`. A bad item never fails its batch: it carries a PhotoError through
the steps and is answered alone with its 4xx status, while the other items get their predictions.
A photo is only turned when the calibrated confidence reaches the bar and (with `require_agreement`) its four
turned views agree (abstention.py); else it is left as is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torchserve_item import parse_item
from ts.torch_handler.base_handler import BaseHandler

import food_rotation
from food_rotation.abstention import answering_views, averaged, calibrated, decide
from food_rotation.handler_settings import HandlerSettings
from food_rotation.photo_io import PhotoError, load_upright, render_upright
from food_rotation.rotation_model import CLASSES, RotationNet, as_batch, for_inference, to_pixels
from prepared import Prepared

logger = logging.getLogger(__name__)
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


class RotationHandler(BaseHandler):  # the only class here: TorchServe loads the module's single class
    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        metadata = json.loads((model_dir / "metadata.json").read_text())
        self.settings = HandlerSettings.from_archive(metadata, (context.model_yaml_config or {}).get("handler"))
        torch.set_num_threads(self.settings.torch_threads)
        gpu_id = properties.get("gpu_id")
        self.device = torch.device(f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu")
        manifest = context.manifest["model"]
        model = RotationNet(self.settings.arch, self.settings.turn_averaging)
        weights = torch.load(model_dir / manifest["serializedFile"], map_location=self.device, weights_only=True)
        model.load_state_dict(weights)
        self.model = for_inference(answering_views(model), self.device,  # the four views, not only their mean
                                   self.settings.channels_last, self.settings.freeze, self.settings.image_size)
        self.model_version = str(manifest.get("modelVersion", metadata.get("version", "unknown")))
        self.manifest = context.manifest
        self.initialized = True
        logger.info("loaded %s v%s (%s, %dpx) on %s, library from %s", manifest.get("modelName"),
                    self.model_version, self.settings.arch, self.settings.image_size, self.device,
                    Path(food_rotation.__file__).parent)

    def preprocess(self, data: list[dict[str, Any]]) -> list[Prepared | PhotoError]:
        items: list[Prepared | PhotoError] = []
        for idx, request in enumerate(data):
            try:
                payload = parse_item(request, self.context.get_all_request_header(idx))
                image, orientation = load_upright(payload.image, self.settings.image_size,
                                                  self.settings.max_image_pixels, self.settings.max_full_decode_pixels)
                items.append(Prepared(payload, to_pixels(image, self.settings.image_size),
                                   orientation.degree, orientation.mirrored))
            except PhotoError as error:
                items.append(error)
            except Exception:  # a bug hit by one item must not fail the whole batch
                logger.exception("unexpected failure preparing item %d", idx)
                items.append(PhotoError(500, "internal_error", "the image could not be processed"))
        return items

    def inference(self, items: list[Prepared | PhotoError], *args: Any, **kwargs: Any) -> list[Prepared | PhotoError]:
        ready = [item for item in items if isinstance(item, Prepared)]
        if ready:
            batch = as_batch([item.pixels for item in ready], self.device, self.settings.channels_last)
            with torch.inference_mode():
                logits, agree = averaged(self.model(batch))
                probabilities = calibrated(logits, self.settings.temperature).cpu()
            for item, row, views_agree in zip(ready, probabilities, agree.cpu().tolist(), strict=True):
                item.probabilities, item.views_agree = row, views_agree
        return items

    def postprocess(self, items: list[Prepared | PhotoError]) -> list[bytes | str]:
        return [self._answer(idx, item) for idx, item in enumerate(items)]

    def _answer(self, idx: int, item: Prepared | PhotoError) -> bytes | str:
        if isinstance(item, Prepared):
            try:
                return self._prediction(idx, item)
            except PhotoError as error:
                item = error
        self.context.set_response_status(item.status, item.code, idx)
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(item.as_dict())

    def _prediction(self, idx: int, item: Prepared) -> bytes | str:
        if item.probabilities is None:
            raise RuntimeError("inference() left an item without probabilities")
        bar = self.settings.min_confidence if item.payload.min_confidence is None else item.payload.min_confidence
        verdict = decide(item.probabilities, bar, item.views_agree, self.settings.require_agreement)
        # What the archive's own bar says, whatever the caller asked for: the gateway's canary analysis reads it,
        # so a caller's min_confidence cannot make a version look surer than it is (issue 33).
        own = verdict if item.payload.min_confidence is None else decide(
            item.probabilities, self.settings.min_confidence, item.views_agree, self.settings.require_agreement)
        self.context.set_response_header(idx, "X-Archive-Trusted", "true" if own.trusted else "false")
        prediction = {
            "model_degree": verdict.model_degree,
            "exif_degree": item.exif_degree,
            "exif_mirrored": item.exif_mirrored,
            "confidence": round(verdict.confidence, 6),
            "probabilities": {
                str(degree): round(float(p), 6) for degree, p in zip(CLASSES, item.probabilities, strict=True)
            },
            "model_version": self.model_version,
            "trusted": verdict.trusted,
            "min_confidence": bar,
            "views_agree": verdict.views_agree,
            "applied_degree": verdict.applied_degree,
        }
        image_format = item.payload.output_format
        if image_format is None:
            self.context.set_response_content_type(idx, "application/json")
            return json.dumps(prediction)
        upright = render_upright(item.payload.image, verdict.applied_degree, image_format,
                                 self.settings.max_image_pixels, self.settings.jpeg_quality,
                                 self.settings.max_answer_bytes, self.settings.max_full_decode_pixels)
        self.context.set_response_content_type(idx, _CONTENT_TYPES[image_format])
        for key in ("model_degree", "exif_degree", "confidence", "model_version", "applied_degree"):
            self.context.set_response_header(idx, "X-" + key.replace("_", "-").title(), str(prediction[key]))
        self.context.set_response_header(idx, "X-Trusted", "true" if verdict.trusted else "false")
        self.context.set_response_header(idx, "X-Views-Agree", "true" if verdict.views_agree else "false")
        return upright
