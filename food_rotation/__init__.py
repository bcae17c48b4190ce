"""The rotation library: decode and turn photos (photo_io), read a request's photo and options (request_payload),
the model (rotation_model), when to trust its answer (abstention), the handler's settings and the one error shape
(service_error).

The bottom layer: no TorchServe, no aiohttp, nothing of the gateway here (tests/unit/test_layers.py). handler/
adapts it to TorchServe, auth_plugin/ (the gateway) uses it as a plain library, and operations/ drives both. Every
.mar carries its own copy (training/archive.py) without training/ (data, training, evaluation, leave one source
out, archives), which this module does not import.
"""

MODEL_NAME = "food_rotation"  # the one model this service serves: in TorchServe, in every URL, in each archive's name
