"""Training, evaluation and archives: photos -> checkpoint (train, train_pretrained, train_end_to_end,
distill_student) -> weights-only .pth (extract_model_weight) -> calibrated (evaluate, calibration) -> .mar
(archive); the rule a version ships with, chosen leaving one source out (source_rule, leave_one_source_out,
source_evaluation, fit_head). Data: real_data, qt_resources, real_scenes, make_demo_data. The feedback loop's
retrain drives these from operations/retrain.py.

Not carried in any .mar (archive.staged_library leaves it out): TorchServe never imports it. Command lines:
`python -m food_rotation.training.<module>`, or the thin wrappers in scripts/.
"""
