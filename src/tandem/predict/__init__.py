"""Remaining-length predictor on the serving model's hidden states (ARES), with baselines.

Pipeline: ``collect`` (run the model, record hidden states every k tokens) -> ``train`` (ARES
head, prompt-only head, TRAIL classifier, mean table, on one split by request) -> ``evaluate``
(MAE, Kendall tau, parameters, overhead) -> ``error_model_build`` (the measured error as a
JSON file the simulator samples from).

Modules that need torch (``[predict]`` extra): ``prompts``, ``collect``, ``heads``, ``train``,
``checkpoint``, ``evaluate``, ``overhead``, ``online``. Numpy only: ``dataset``, ``split``,
``trail``, ``baselines``, ``metrics``, ``error_model``, ``error_model_build``. This ``__init__``
imports nothing, so ``tandem.predict.error_model`` works without torch.
"""
