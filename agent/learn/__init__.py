"""Learning normal, offline: from a machine's recording to an ONNX model and its card.

Owns: ``record`` (a pipeline's input to a wide CSV), ``fit`` (the robust PCA model of normal),
``export`` (the model to ONNX with its metadata contract), ``modelcard`` (the card and its picture),
``trainer`` (replay a recording through the pipeline, fit, export) and ``commands`` (``edge-agent
record`` and ``train``).

May import: everything below it (contracts, config, stream, delivery, ops, runtime). Never the CLI, the
demo or plugins (the replay source is built through the registry).
"""
