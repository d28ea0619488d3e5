//! `batch_size: auto`: how many images per ONNX Runtime call fit in memory.
//!
//! The estimate is an upper bound of one image's working set: the sum of every intermediate
//! tensor of the generator, target and CLIP image graphs at batch 1 (ONNX Runtime reuses buffers,
//! so it needs less), times 3 for the gradient graphs, which keep forward activations alive while
//! they compute the same number of cotangents, halved when the graphs run in float16. Half of the
//! memory available now is spent on it: host memory on the CPU, the GPU's free memory (from
//! `nvidia-smi`) when the models run on CUDA or TensorRT.

use crate::search::pipeline::Pipeline;
use zoom_graph::shapes::{fix_input_shapes, infer};
use zoom_graph::ModelProto;

/// Largest batch `auto` picks (larger batches stop paying off on CPU and GPU alike).
pub const MAX_AUTO_BATCH: usize = 64;
/// Gradient graphs hold the forward activations plus as many cotangents (and temporaries).
const GRADIENT_FACTOR: u64 = 3;

/// The batch size `auto` resolves to, and a sentence saying why.
pub fn auto_batch_size(pipe: &Pipeline) -> (usize, String) {
    let gen = pipe.generator.model();
    let mut per_image: u64 = [
        &pipe.generator.graph,
        &pipe.target.graph,
        &pipe.clip.image_graph,
    ]
    .into_iter()
    .map(activation_bytes)
    .sum::<u64>()
        * GRADIENT_FACTOR;
    if gen.fp16() {
        per_image /= 2;
    }
    let on_gpu = gen.provider().is_gpu();
    let (available, source) = match (on_gpu, on_gpu.then(gpu_free_memory).flatten()) {
        (true, Some(free)) => (Some(free), "free on the GPU"),
        (true, None) => (
            available_memory(),
            "available on the host (GPU memory unknown: no nvidia-smi; set batch_size)",
        ),
        (false, _) => (available_memory(), "available"),
    };
    let Some(available) = available else {
        return (
            8,
            "batch_size auto: free memory unknown (no /proc/meminfo), using 8".into(),
        );
    };
    let batch = choose(available, per_image);
    (
        batch,
        format!(
            "batch_size auto: {batch} (about {} MiB per image for forward + gradient graphs, {} MiB {source})",
            per_image >> 20,
            available >> 20
        ),
    )
}

/// Half the available memory over the per-image bound, within 1..=MAX_AUTO_BATCH.
fn choose(available: u64, per_image: u64) -> usize {
    let fit = (available / 2) / per_image.max(1);
    (fit as usize).clamp(1, MAX_AUTO_BATCH)
}

/// Bytes of every value computed by the graph at batch 1 (initializers excluded).
fn activation_bytes(model: &ModelProto) -> u64 {
    let mut m = model.clone();
    if fix_input_shapes(&mut m, &Default::default()).is_err() {
        return 0;
    }
    let Ok(inf) = infer(&m, 1 << 12) else {
        return 0;
    };
    let Ok(graph) = m.graph_ref() else {
        return 0;
    };
    graph
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .filter_map(|o| {
            let t = inf.types.get(o)?;
            let dims = t.static_dims()?;
            let n: u64 = dims.iter().map(|&d| d as u64).product();
            Some(n * t.dtype.size_bytes().unwrap_or(4) as u64)
        })
        .sum()
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free memory of the GPU the CUDA provider uses (device 0 of `CUDA_VISIBLE_DEVICES`), in bytes.
fn gpu_free_memory() -> Option<u64> {
    let device = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').next().map(|d| d.trim().to_string()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "0".into());
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.free",
            "--format=csv,noheader,nounits",
            "-i",
            &device,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_free_mib(&String::from_utf8_lossy(&out.stdout))
}

/// `nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits` prints MiB, one GPU a line.
fn parse_free_mib(text: &str) -> Option<u64> {
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_half_the_memory_and_stays_in_range() {
        assert_eq!(choose(8 << 30, 64 << 20), 64);
        assert_eq!(choose(8 << 30, 256 << 20), 16);
        assert_eq!(choose(100 << 20, 1 << 30), 1);
        assert_eq!(choose(1 << 30, 0), MAX_AUTO_BATCH);
    }

    #[test]
    fn reads_nvidia_smi_free_memory() {
        assert_eq!(parse_free_mib("143045\n"), Some(143045 << 20));
        assert_eq!(parse_free_mib("  812\n9000\n"), Some(812 << 20));
        assert_eq!(parse_free_mib("[N/A]\n"), None);
        assert_eq!(parse_free_mib(""), None);
    }
}
