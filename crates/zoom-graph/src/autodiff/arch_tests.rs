//! Architecture tests: small networks with RANDOM weights (not trained models; the weights only
//! exist to exercise the operators) built with the graph builder at test time: a ResNet-style
//! CNN classifier, a U-Net (ConvTranspose, Concat, Resize), a tiny ViT (patchify Conv, MatMul
//! attention, LayerNorm, Softmax, Gelu, class-token Gather) with legacy-exporter shape
//! arithmetic, and a StyleGAN2-like non-fused modulated convolution block. Their VJPs are checked
//! against finite differences like the single-operator cases.
//!
//! `vjp_cost_ratio` (ignored by default; run with `cargo test --release -- --ignored
//! vjp_cost_ratio --nocapture`) times larger versions on ONNX Runtime CPU and prints the VJP /
//! forward cost ratios.

use super::testing::{run_cases, Case};
use super::Tuning;
use crate::attrs;
use crate::builder::GraphBuilder;
use crate::testutil::Rng;
use crate::{DataType, Dim};

/// Emits layers with random weights (std 1/√fan_in).
pub(crate) struct Net<'a> {
    pub b: &'a mut GraphBuilder,
    pub dt: DataType,
    rng: Rng,
}

impl<'a> Net<'a> {
    pub fn new(b: &'a mut GraphBuilder, dt: DataType, seed: u64) -> Self {
        Net {
            b,
            dt,
            rng: Rng::new(seed),
        }
    }

    fn random(&mut self, hint: &str, dims: &[usize], std: f64) -> String {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.rng.normal() * std).collect();
        self.b
            .constant_float(&format!("random_{hint}"), self.dt, dims, &v)
    }

    fn positive(&mut self, hint: &str, n: usize) -> String {
        let v: Vec<f64> = (0..n).map(|_| self.rng.uniform(0.5, 1.5)).collect();
        self.b
            .constant_float(&format!("random_{hint}"), self.dt, &[n], &v)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &str,
        cin: usize,
        cout: usize,
        k: usize,
        s: i64,
        p: i64,
        group: usize,
    ) -> String {
        let w = self.random(
            "conv_w",
            &[cout, cin / group, k, k],
            1.0 / ((cin / group * k * k) as f64).sqrt(),
        );
        let bias = self.random("conv_b", &[cout], 0.1);
        self.b.op(
            "Conv",
            &[x, &w, &bias],
            vec![
                attrs::ints("strides", &[s, s]),
                attrs::ints("pads", &[p, p, p, p]),
                attrs::int("group", group as i64),
            ],
        )
    }

    pub fn bn(&mut self, x: &str, c: usize) -> String {
        let scale = self.positive("bn_scale", c);
        let bias = self.random("bn_bias", &[c], 0.1);
        let mean = self.random("bn_mean", &[c], 0.1);
        let var = self.positive("bn_var", c);
        self.b.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![],
        )
    }

    pub fn relu(&mut self, x: &str) -> String {
        self.b.op("Relu", &[x], vec![])
    }

    pub fn linear(&mut self, x: &str, din: usize, dout: usize) -> String {
        let w = self.random("fc_w", &[din, dout], 1.0 / (din as f64).sqrt());
        let bias = self.random("fc_b", &[dout], 0.1);
        let m = self.b.matmul(x, &w);
        self.b.add(&m, &bias)
    }

    pub fn layer_norm(&mut self, x: &str, d: usize) -> String {
        let g = self.positive("ln_g", d);
        let bias = self.random("ln_b", &[d], 0.1);
        self.b.op(
            "LayerNormalization",
            &[x, &g, &bias],
            vec![attrs::int("axis", -1)],
        )
    }

    /// Gelu as the legacy exporters write it: x·½·(1 + erf(x/√2)).
    pub fn gelu_erf(&mut self, x: &str) -> String {
        let k = self
            .b
            .constant_float("c", self.dt, &[], &[std::f64::consts::FRAC_1_SQRT_2]);
        let one = self.b.constant_float("one", self.dt, &[], &[1.0]);
        let half = self.b.constant_float("half", self.dt, &[], &[0.5]);
        let t = self.b.mul(x, &k);
        let e = self.b.op("Erf", &[&t], vec![]);
        let e = self.b.add(&e, &one);
        let h = self.b.mul(x, &half);
        self.b.mul(&h, &e)
    }
}

/// ResNet-style classifier: stem conv–BN–ReLU, 3×3/2 max pool, one residual block, a strided
/// conv, global average pool, flatten, Gemm classifier and LogSoftmax.
pub(crate) fn cnn(b: &mut GraphBuilder, dt: DataType, n: usize, hw: usize, width: usize) {
    let mut net = Net::new(b, dt, 11);
    let x = net.b.input(
        "image",
        dt,
        &[
            Dim::Fixed(n as i64),
            Dim::Fixed(3),
            Dim::Fixed(hw as i64),
            Dim::Fixed(hw as i64),
        ],
    );
    let c = width;
    let s = net.conv(&x, 3, c, 3, 1, 1, 1);
    let s = net.bn(&s, c);
    let s = net.relu(&s);
    let p = net.b.op(
        "MaxPool",
        &[&s],
        vec![
            attrs::ints("kernel_shape", &[3, 3]),
            attrs::ints("strides", &[2, 2]),
            attrs::ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let r = net.conv(&p, c, c, 3, 1, 1, 1);
    let r = net.bn(&r, c);
    let r = net.relu(&r);
    let r = net.conv(&r, c, c, 3, 1, 1, 1);
    let r = net.bn(&r, c);
    let a = net.b.add(&r, &p);
    let a = net.relu(&a);
    let d = net.conv(&a, c, 2 * c, 3, 2, 1, 1);
    let d = net.relu(&d);
    let dw = net.conv(&d, 2 * c, 2 * c, 3, 1, 1, 2 * c); // depthwise
    let lo = net.b.constant_float("relu6_lo", dt, &[], &[0.0]);
    let hi = net.b.constant_float("relu6_hi", dt, &[], &[6.0]);
    let dw = net.b.op("Clip", &[&dw, &lo, &hi], vec![]);
    let dw = net.b.op("HardSwish", &[&dw], vec![]);
    let g = net.b.op("GlobalAveragePool", &[&dw], vec![]);
    let f = net.b.op("Flatten", &[&g], vec![attrs::int("axis", 1)]);
    let w = net.random("fc_w", &[10, 2 * c], 1.0 / ((2 * c) as f64).sqrt());
    let bias = net.random("fc_b", &[10], 0.1);
    let logits = net
        .b
        .op("Gemm", &[&f, &w, &bias], vec![attrs::int("transB", 1)]);
    let ls = net
        .b
        .op("LogSoftmax", &[&logits], vec![attrs::int("axis", 1)]);
    net.b.output(&ls, "log_probs");
}

/// ResNet-18 layout (stem 7×7/2, 3×3/2 max pool, 4 stages of 2 basic blocks with 1×1/2
/// downsampling shortcuts, global average pool, 1000-way Gemm), random weights.
pub(crate) fn resnet18(b: &mut GraphBuilder, dt: DataType, n: usize, hw: usize, width: usize) {
    let mut net = Net::new(b, dt, 18);
    let x = net.b.input(
        "image",
        dt,
        &[
            Dim::Fixed(n as i64),
            Dim::Fixed(3),
            Dim::Fixed(hw as i64),
            Dim::Fixed(hw as i64),
        ],
    );
    let s = net.conv(&x, 3, width, 7, 2, 3, 1);
    let s = net.bn(&s, width);
    let s = net.relu(&s);
    let mut h = net.b.op(
        "MaxPool",
        &[&s],
        vec![
            attrs::ints("kernel_shape", &[3, 3]),
            attrs::ints("strides", &[2, 2]),
            attrs::ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let mut cin = width;
    for (stage, cout) in [width, 2 * width, 4 * width, 8 * width]
        .into_iter()
        .enumerate()
    {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let a = net.conv(&h, cin, cout, 3, stride, 1, 1);
            let a = net.bn(&a, cout);
            let a = net.relu(&a);
            let a = net.conv(&a, cout, cout, 3, 1, 1, 1);
            let a = net.bn(&a, cout);
            let short = if stride != 1 || cin != cout {
                let d = net.conv(&h, cin, cout, 1, stride, 0, 1);
                net.bn(&d, cout)
            } else {
                h.clone()
            };
            let sum = net.b.add(&a, &short);
            h = net.relu(&sum);
            cin = cout;
        }
    }
    let g = net.b.op("GlobalAveragePool", &[&h], vec![]);
    let f = net.b.op("Flatten", &[&g], vec![attrs::int("axis", 1)]);
    let w = net.random(
        "fc_w",
        &[1000, 8 * width],
        1.0 / ((8 * width) as f64).sqrt(),
    );
    let bias = net.random("fc_b", &[1000], 0.1);
    let logits = net
        .b
        .op("Gemm", &[&f, &w, &bias], vec![attrs::int("transB", 1)]);
    net.b.output(&logits, "logits");
}

/// U-Net: two levels (MaxPool down, ConvTranspose up, skip Concat), a bilinear Resize head and
/// per-pixel logits.
pub(crate) fn unet(b: &mut GraphBuilder, dt: DataType, n: usize, hw: usize, width: usize) {
    let mut net = Net::new(b, dt, 12);
    let c = width;
    let x = net.b.input(
        "image",
        dt,
        &[
            Dim::Fixed(n as i64),
            Dim::Fixed(3),
            Dim::Fixed(hw as i64),
            Dim::Fixed(hw as i64),
        ],
    );
    let e1 = net.conv(&x, 3, c, 3, 1, 1, 1);
    let e1 = net.relu(&e1);
    let d = net.b.op(
        "MaxPool",
        &[&e1],
        vec![
            attrs::ints("kernel_shape", &[2, 2]),
            attrs::ints("strides", &[2, 2]),
        ],
    );
    let e2 = net.conv(&d, c, 2 * c, 3, 1, 1, 1);
    let e2 = net.bn(&e2, 2 * c);
    let e2 = net.relu(&e2);
    let wt = net.random("up_w", &[2 * c, c, 2, 2], 1.0 / ((2 * c * 4) as f64).sqrt());
    let up = net.b.op(
        "ConvTranspose",
        &[&e2, &wt],
        vec![attrs::ints("strides", &[2, 2])],
    );
    let cat = net.b.concat(&[&up, &e1], 1);
    let dd = net.conv(&cat, 2 * c, c, 3, 1, 1, 1);
    let dd = net
        .b
        .op("LeakyRelu", &[&dd], vec![attrs::float("alpha", 0.1)]);
    let half = net
        .b
        .constant_float("scales", DataType::FLOAT, &[4], &[1.0, 1.0, 0.5, 0.5]);
    let small = net.b.op(
        "Resize",
        &[&dd, "", &half],
        vec![attrs::string("mode", "linear")],
    );
    let sizes = net
        .b
        .const_i64s(&[n as i64, c as i64, hw as i64, hw as i64]);
    let big = net.b.op(
        "Resize",
        &[&small, "", "", &sizes],
        vec![
            attrs::string("mode", "linear"),
            attrs::string("coordinate_transformation_mode", "align_corners"),
        ],
    );
    let logits = net.conv(&big, c, 2, 1, 1, 0, 1);
    let prob = net.b.op("Sigmoid", &[&logits], vec![]);
    net.b.output(&prob, "mask");
}

/// Tiny ViT: 4×4 patchify conv, class token, position embedding, `depth` pre-norm blocks of
/// multi-head self-attention and a Gelu MLP, class-token head. The attention reshapes use
/// legacy-exporter shape arithmetic (Shape → Gather → Concat → Reshape).
pub(crate) fn vit(
    b: &mut GraphBuilder,
    dt: DataType,
    n: usize,
    hw: usize,
    d: usize,
    heads: usize,
    depth: usize,
) {
    let mut net = Net::new(b, dt, 13);
    let x = net.b.input(
        "image",
        dt,
        &[
            Dim::Fixed(n as i64),
            Dim::Fixed(3),
            Dim::Fixed(hw as i64),
            Dim::Fixed(hw as i64),
        ],
    );
    let p = net.conv(&x, 3, d, 4, 4, 0, 1);
    let t = (hw / 4) * (hw / 4);
    let p = net.b.reshape(&p, &[n as i64, d as i64, t as i64]);
    let p = net.b.transpose(&p, &[0, 2, 1]);
    let cls = net.random("cls", &[n, 1, d], 0.5);
    let mut h = net.b.concat(&[&cls, &p], 1);
    let pos = net.random("pos", &[1, t + 1, d], 0.1);
    h = net.b.add(&h, &pos);
    let hd = d / heads;
    for _ in 0..depth {
        let a = net.layer_norm(&h, d);
        let q = net.linear(&a, d, d);
        let k = net.linear(&a, d, d);
        let v = net.linear(&a, d, d);
        // [n, T, d] -> [n, T, heads, hd] via a shape computed in the graph.
        let split = |net: &mut Net, v: &str| {
            let s = net.b.op("Shape", &[v], vec![]);
            let idx = net.b.const_i64s(&[0, 1]);
            let nt = net.b.op("Gather", &[&s, &idx], vec![]);
            let tail = net.b.const_i64s(&[heads as i64, hd as i64]);
            let shape = net.b.concat(&[&nt, &tail], 0);
            let r = net.b.op("Reshape", &[v, &shape], vec![]);
            net.b.transpose(&r, &[0, 2, 1, 3])
        };
        let (q, k, v) = (
            split(&mut net, &q),
            split(&mut net, &k),
            split(&mut net, &v),
        );
        let kt = net.b.transpose(&k, &[0, 1, 3, 2]);
        let s = net.b.matmul(&q, &kt);
        let scale = net
            .b
            .constant_float("scale", dt, &[], &[1.0 / (hd as f64).sqrt()]);
        let s = net.b.mul(&s, &scale);
        let att = net.b.op("Softmax", &[&s], vec![attrs::int("axis", -1)]);
        let o = net.b.matmul(&att, &v);
        let o = net.b.transpose(&o, &[0, 2, 1, 3]);
        let o = net.b.reshape(&o, &[0, 0, d as i64]);
        let o = net.linear(&o, d, d);
        h = net.b.add(&h, &o);
        let m = net.layer_norm(&h, d);
        let m = net.linear(&m, d, 2 * d);
        let m = net.gelu_erf(&m);
        let m = net.linear(&m, 2 * d, d);
        h = net.b.add(&h, &m);
    }
    let h = net.layer_norm(&h, d);
    let zero = net.b.constant(
        "cls_index",
        &crate::tensor::HostTensor::int(DataType::INT64, vec![], vec![0]),
    );
    let c = net
        .b
        .op("Gather", &[&h, &zero], vec![attrs::int("axis", 1)]);
    let logits = net.linear(&c, d, 10);
    let sm = net
        .b
        .op("Softmax", &[&logits], vec![attrs::int("axis", -1)]);
    net.b.output(&sm, "probs");
}

/// StyleGAN2-like synthesis block in the non-fused form: x·style → conv → ·demodulation, noise,
/// bias, LeakyReLU·√2, bilinear ×2 upsampling, toRGB and tanh. Inputs: the latent `w` and the
/// feature map; gradients flow through the style (affine) path and the features.
pub(crate) fn stylegan_block(b: &mut GraphBuilder, dt: DataType, c: usize, hw: usize) {
    let mut net = Net::new(b, dt, 14);
    let w = net.b.input("w", dt, &[Dim::Fixed(1), Dim::Fixed(8)]);
    let x = net.b.input(
        "features",
        dt,
        &[
            Dim::Fixed(1),
            Dim::Fixed(c as i64),
            Dim::Fixed(hw as i64),
            Dim::Fixed(hw as i64),
        ],
    );
    let style = net.linear(&w, 8, c); // affine: [1, c]
    let one = net.b.constant_float("one", dt, &[], &[1.0]);
    let style = net.b.add(&style, &one);
    let s4 = net.b.reshape(&style, &[1, c as i64, 1, 1]);
    let xm = net.b.mul(&x, &s4);
    let wconv = net.random("modconv_w", &[c, c, 3, 3], 1.0 / ((c * 9) as f64).sqrt());
    let y = net.b.op(
        "Conv",
        &[&xm, &wconv],
        vec![attrs::ints("pads", &[1, 1, 1, 1])],
    );
    // demod = rsqrt(Σ_{in,k} (W·s)² + ε) per output channel
    let w2 = net.b.mul(&wconv, &wconv);
    let w2 = net.b.reduce("ReduceSum", &w2, &[2, 3], false); // [c_out, c_in]
    let s2 = net.b.mul(&style, &style); // [1, c_in]
    let st = net.b.transpose(&s2, &[1, 0]); // [c_in, 1]
    let sum = net.b.matmul(&w2, &st); // [c_out, 1]
    let eps = net.b.constant_float("eps", dt, &[], &[1e-8]);
    let sum = net.b.add(&sum, &eps);
    let dm = net.b.op("Sqrt", &[&sum], vec![]);
    let dm = net.b.op("Reciprocal", &[&dm], vec![]);
    let dm = net.b.reshape(&dm, &[1, c as i64, 1, 1]);
    let y = net.b.mul(&y, &dm);
    let noise = net.random("noise", &[1, 1, hw, hw], 0.1);
    let y = net.b.add(&y, &noise);
    let y = net
        .b
        .op("LeakyRelu", &[&y], vec![attrs::float("alpha", 0.2)]);
    let k = net
        .b
        .constant_float("sqrt2", dt, &[], &[std::f64::consts::SQRT_2]);
    let y = net.b.mul(&y, &k);
    let scales = net
        .b
        .constant_float("scales", DataType::FLOAT, &[4], &[1.0, 1.0, 2.0, 2.0]);
    let y = net.b.op(
        "Resize",
        &[&y, "", &scales],
        vec![attrs::string("mode", "linear")],
    );
    let rgb = net.conv(&y, c, 3, 1, 1, 0, 1);
    let img = net.b.op("Tanh", &[&rgb], vec![]);
    net.b.output(&img, "image");
}

#[test]
fn architectures_match_finite_differences() {
    // Random weights; ReLU/MaxPool kinks make float32 finite differences approximate, hence a
    // small step and a few-percent tolerance (the single-operator tests are the tight checks).
    run_cases(vec![
        Case::graph("CNN classifier (random weights)", 17, |b, dt| {
            cnn(b, dt, 1, 12, 4)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        Case::graph("CNN classifier opset 14 (random weights)", 14, |b, dt| {
            cnn(b, dt, 1, 12, 4)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        Case::graph("ResNet-18 layout, width 8 (random weights)", 17, |b, dt| {
            resnet18(b, dt, 1, 32, 8)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        Case::graph("U-Net (random weights)", 17, |b, dt| unet(b, dt, 1, 8, 3))
            .float_only()
            .f32_fd(3e-3, 5e-2),
        Case::graph("ViT (random weights)", 17, |b, dt| {
            vit(b, dt, 1, 8, 8, 2, 1)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        Case::graph("ViT opset 13 (random weights)", 13, |b, dt| {
            vit(b, dt, 1, 8, 8, 2, 1)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        Case::graph("StyleGAN2-like block (random weights)", 17, |b, dt| {
            stylegan_block(b, dt, 4, 4)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2),
        // The CPU tuning's Relu masks inside whole networks (16 channels: ORT's blocked layout).
        Case::graph("CNN classifier, width 16 (random weights)", 17, |b, dt| {
            cnn(b, dt, 1, 12, 16)
        })
        .float_only()
        .f32_fd(3e-3, 5e-2)
        .tuned(Tuning::CpuFloat32),
        Case::graph(
            "ResNet-18 layout, width 16 (random weights)",
            17,
            |b, dt| resnet18(b, dt, 1, 32, 16),
        )
        .float_only()
        .f32_fd(3e-3, 5e-2)
        .tuned(Tuning::CpuFloat32),
    ]);
}

/// CPU time of the whole process in seconds (utime + stime of /proc/self/stat, all threads):
/// unlike wall time, it excludes what other processes take on a shared machine.
fn thread_cpu() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        });
    ticks.map(|t| t / 100.0).unwrap_or(f64::NAN)
}

/// Alternating runs of two models (so both see the same machine load): minimum wall time and
/// mean process CPU time of each (clock ticks are 10 ms: `reps` should make the totals large).
fn time_pair(
    a: &mut crate::testutil::Runner,
    fa: &[(&str, &crate::tensor::HostTensor)],
    b: &mut crate::testutil::Runner,
    fb: &[(&str, &crate::tensor::HostTensor)],
    reps: usize,
) -> [f64; 4] {
    let _ = a.run(fa).expect("warm-up run");
    let _ = b.run(fb).expect("warm-up run");
    let (mut wa, mut wb, mut ca, mut cb) = (f64::INFINITY, f64::INFINITY, 0.0, 0.0);
    for _ in 0..reps {
        let (s, c) = (std::time::Instant::now(), thread_cpu());
        a.run(fa).expect("run");
        wa = wa.min(s.elapsed().as_secs_f64());
        ca += thread_cpu() - c;
        let (s, c) = (std::time::Instant::now(), thread_cpu());
        b.run(fb).expect("run");
        wb = wb.min(s.elapsed().as_secs_f64());
        cb += thread_cpu() - c;
    }
    [wa, wb, ca / reps as f64, cb / reps as f64]
}

#[test]
#[ignore = "timing benchmark; run with --release -- --ignored --nocapture"]
fn vjp_cost_ratio() {
    use crate::tensor::HostTensor;
    use crate::testutil::Runner;
    type Build = Box<dyn Fn(&mut GraphBuilder)>;
    let threads: usize = std::env::var("ZOOM_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // ZOOM_BENCH_BATCH: images per run (1 by default; GPUs need more to be busy).
    // ZOOM_BENCH_FP16: also time the float16 conversions of both graphs (meant for GPU providers).
    let n: usize = std::env::var("ZOOM_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let fp16 = std::env::var("ZOOM_BENCH_FP16").is_ok();
    let models: Vec<(String, Build)> = vec![
        (
            format!("CNN {n}x3x128x128 w32"),
            Box::new(move |b| cnn(b, DataType::FLOAT, n, 128, 32)),
        ),
        (
            format!("CNN {n}x3x128x128 w64"),
            Box::new(move |b| cnn(b, DataType::FLOAT, n, 128, 64)),
        ),
        (
            format!("ResNet-18 layout {n}x3x224x224"),
            Box::new(move |b| resnet18(b, DataType::FLOAT, n, 224, 64)),
        ),
        (
            format!("U-Net {n}x3x128x128 w32"),
            Box::new(move |b| unet(b, DataType::FLOAT, n, 128, 32)),
        ),
        (
            format!("ViT {n}x3x64x64 d128 h4 x4"),
            Box::new(move |b| vit(b, DataType::FLOAT, n, 64, 128, 4, 4)),
        ),
        (
            "StyleGAN2-like block c64 32->64".to_string(),
            Box::new(|b| stylegan_block(b, DataType::FLOAT, 64, 32)),
        ),
    ];
    let mut rng = Rng::new(7);
    for (name, f) in models {
        let mut b = GraphBuilder::new(17);
        f(&mut b);
        let m = b.build().unwrap();
        let t0 = std::time::Instant::now();
        let v = crate::testutil::vjp_wrt_inputs(&m);
        let build_s = t0.elapsed().as_secs_f64();
        let g = m.graph.as_ref().unwrap();
        let feeds = crate::testutil::random_feeds(&m, 7);
        let mut vfeeds = feeds.clone();
        for o in &g.output {
            let s: Vec<usize> = o
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.fixed().unwrap() as usize)
                .collect();
            let n = s.iter().product();
            vfeeds.push((
                format!("{}_grad", o.name),
                HostTensor::float(DataType::FLOAT, s, (0..n).map(|_| rng.normal()).collect()),
            ));
        }
        let f1: Vec<(&str, &HostTensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let f2: Vec<(&str, &HostTensor)> = vfeeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut fr = Runner::with_threads(&m, threads).unwrap();
        let mut vr = Runner::with_threads(&v, threads).unwrap();
        let [tf, tv, cf, cv] = time_pair(&mut fr, &f1, &mut vr, &f2, 100);
        if fp16 {
            let opts = crate::fp16::Fp16Options::default();
            let m16 = crate::fp16::convert_to_fp16(&m, &opts).unwrap().0;
            let v16 = crate::fp16::convert_to_fp16(&v, &opts).unwrap().0;
            let mut fr16 = Runner::with_threads(&m16, threads).unwrap();
            let mut vr16 = Runner::with_threads(&v16, threads).unwrap();
            let [tf16, tv16, _, _] = time_pair(&mut fr16, &f1, &mut vr16, &f2, 100);
            eprintln!(
                "{name}: fp16 min wall {:.2} / {:.2} ms (fp32 / fp16: forward {:.2}x, VJP {:.2}x)",
                tf16 * 1e3,
                tv16 * 1e3,
                tf / tf16,
                tv / tv16
            );
        }
        let hist = op_histogram(&v);
        if std::env::var("ZOOM_BENCH_PROFILE").is_ok() {
            let dir = tempfile::tempdir().unwrap();
            for (label, model, feeds) in [("forward", &m, &f1), ("VJP", &v, &f2)] {
                let mut p = Runner::profiled(model, threads, &dir.path().join("p")).unwrap();
                for _ in 0..10 {
                    p.run(feeds).unwrap();
                }
                let prof = p.profile();
                let top: Vec<String> = prof
                    .iter()
                    .take(8)
                    .map(|(o, us)| format!("{o} {:.1}ms", us / 10e3))
                    .collect();
                eprintln!("    {label} per run: {}", top.join(", "));
            }
        }
        eprintln!(
            "{name}: CPU time forward {:.2} ms, VJP {:.2} ms, ratio {:.2}; min wall {:.2} / {:.2} ms, ratio {:.2} ({} fwd nodes, {} VJP nodes, built in {:.2} s; {threads} threads)\n    VJP ops: {hist}",
            cf * 1e3,
            cv * 1e3,
            cv / cf,
            tf * 1e3,
            tv * 1e3,
            tv / tf,
            g.node.len(),
            v.graph.as_ref().unwrap().node.len(),
            build_s
        );
    }
}

fn op_histogram(m: &crate::proto::ModelProto) -> String {
    let mut h: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &m.graph.as_ref().unwrap().node {
        *h.entry(n.op_type.as_str()).or_default() += 1;
    }
    h.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU time per run of a graph (one thread), for comparing gradient formulations.
fn cpu_per_run(m: &crate::proto::ModelProto, reps: usize) -> f64 {
    use crate::tensor::HostTensor;
    let feeds = crate::testutil::random_feeds(m, 3);
    let f: Vec<(&str, &HostTensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut r = crate::testutil::Runner::new(m).unwrap();
    r.run(&f).unwrap();
    let c = thread_cpu();
    for _ in 0..reps {
        r.run(&f).unwrap();
    }
    (thread_cpu() - c) / reps as f64
}

#[test]
#[ignore = "timing micro-benchmark"]
fn micro_benchmarks() {
    fn shape() -> [Dim; 4] {
        [
            Dim::Fixed(1),
            Dim::Fixed(32),
            Dim::Fixed(128),
            Dim::Fixed(128),
        ]
    }
    type Build = Box<dyn Fn(&mut GraphBuilder)>;
    let graphs: Vec<(&str, Build)> = vec![
        (
            "MaxPool 3x3/2",
            Box::new(|b| {
                let x = b.input("x", DataType::FLOAT, &shape());
                let y = b.op(
                    "MaxPool",
                    &[&x],
                    vec![
                        attrs::ints("kernel_shape", &[3, 3]),
                        attrs::ints("strides", &[2, 2]),
                        attrs::ints("pads", &[1, 1, 1, 1]),
                    ],
                );
                b.output(&y, "y");
            }),
        ),
        (
            "MaxPool 3x3/2 + Indices",
            Box::new(|b| {
                let x = b.input("x", DataType::FLOAT, &shape());
                let y = b.op_multi(
                    "MaxPool",
                    &[&x],
                    vec![
                        attrs::ints("kernel_shape", &[3, 3]),
                        attrs::ints("strides", &[2, 2]),
                        attrs::ints("pads", &[1, 1, 1, 1]),
                    ],
                    2,
                );
                b.output(&y[0], "y");
                b.output(&y[1], "i");
            }),
        ),
        (
            "Where(x>0, x, 0)",
            Box::new(|b| {
                let x = b.input("x", DataType::FLOAT, &shape());
                let z = b.scalar(DataType::FLOAT, 0.0);
                let c = b.op("Greater", &[&x, &z], vec![]);
                let y = b.where_(&c, &x, &z);
                b.output(&y, "y");
            }),
        ),
        (
            "Mul(x, Cast(x>0))",
            Box::new(|b| {
                let x = b.input("x", DataType::FLOAT, &shape());
                let z = b.scalar(DataType::FLOAT, 0.0);
                let c = b.op("Greater", &[&x, &z], vec![]);
                let c = b.cast(&c, DataType::FLOAT);
                let y = b.mul(&x, &c);
                b.output(&y, "y");
            }),
        ),
        (
            "Relu(x)",
            Box::new(|b| {
                let x = b.input("x", DataType::FLOAT, &shape());
                let y = b.op("Relu", &[&x], vec![]);
                b.output(&y, "y");
            }),
        ),
    ];
    for (name, f) in graphs {
        let mut b = GraphBuilder::new(17);
        f(&mut b);
        let m = b.build().unwrap();
        eprintln!("{name}: {:.3} ms", cpu_per_run(&m, 30) * 1e3);
        if name == "MaxPool 3x3/2" {
            let v = crate::testutil::vjp_wrt_inputs(&m);
            eprintln!(
                "  its VJP: {:.3} ms ({})",
                cpu_per_run(&v, 30) * 1e3,
                op_histogram(&v)
            );
            eprintln!("  profile: {}", profile_line(&v));
        }
    }
}

fn profile_line(m: &crate::proto::ModelProto) -> String {
    use crate::tensor::HostTensor;
    let g = m.graph.as_ref().unwrap();
    let mut rng = Rng::new(3);
    let feeds: Vec<(String, HostTensor)> = g
        .input
        .iter()
        .map(|i| {
            let s: Vec<usize> = i
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.fixed().unwrap() as usize)
                .collect();
            let n = s.iter().product();
            (
                i.name.clone(),
                HostTensor::float(DataType::FLOAT, s, (0..n).map(|_| rng.normal()).collect()),
            )
        })
        .collect();
    let f: Vec<(&str, &HostTensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut p = crate::testutil::Runner::profiled(m, 1, &dir.path().join("p")).unwrap();
    for _ in 0..20 {
        p.run(&f).unwrap();
    }
    p.profile()
        .iter()
        .take(10)
        .map(|(o, us)| format!("{o} {:.2}ms", us / 20e3))
        .collect::<Vec<_>>()
        .join(", ")
}
