"""Domain streams for continual speech recognition: the synthetic stream, real-corpus preparers,
manifest datasets, validation and the Avalanche benchmark (see docs/data.md).

Depends on torch, torchaudio, soundfile, numpy, tqdm and avalanche; never on cl_ssvdo models,
strategies, experiments or MLflow.
"""
