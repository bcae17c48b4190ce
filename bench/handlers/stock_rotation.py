from ts.torch_handler.image_classifier import ImageClassifier


class StockRotation(ImageClassifier):
    topk = 4  # the stock handler hardcodes top-5; the rotation model has 4 classes
