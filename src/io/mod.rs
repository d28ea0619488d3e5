//! File formats zoom reads and writes besides ONNX: `.npy` tensors and images.

pub mod atomic;
pub mod image;
pub mod npy;
