"""The rotation library: decode and turn photos (photo_io), read a request's photo and options (request_payload),
the model (rotation_model), when to trust its answer (abstention), the handler's settings and the one error shape
(service_error).

No TorchServe and no aiohttp here: handler/ adapts this to TorchServe, auth_plugin/ (the gateway) and scripts/
(training, evaluation, archives) use it as a plain library. Every .mar carries its own copy (scripts/archive.py).
"""

MODEL_NAME = "food_rotation"  # the one model this service serves: in TorchServe, in every URL, in each archive's name
