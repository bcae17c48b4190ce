"""The rotation library: decode and turn photos (photo_io), read a request's photo and options (request_payload),
the model (rotation_model), when to trust its answer (abstention), the handler's settings and the one error shape
(service_error).

No TorchServe and no aiohttp here: handler/ adapts this to TorchServe, auth_plugin/ (the gateway) uses it as a
plain library. Every .mar carries its own copy (training/archive.py), without the two subpackages below, which this
module does not import: training/ (data, training, evaluation, archives, retraining) and operations/ (starting
and stopping TorchServe and the gateway).
"""

MODEL_NAME = "food_rotation"  # the one model this service serves: in TorchServe, in every URL, in each archive's name
