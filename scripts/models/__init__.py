"""Converters that turn real pretrained weights from registry packages into zoom's ONNX models.

Each model module (dcgan, tfjs targets, mtcnn, selfie) exposes a `build(ctx)` step used by
`scripts/setup_models.py`. Nothing here imports PyTorch or TensorFlow: torch checkpoints are read
with a restricted unpickler (torchzip) and TFJS graphs are interpreted/converted directly (tfjs).
"""
