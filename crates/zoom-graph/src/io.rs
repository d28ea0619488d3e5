//! Reading and writing `.onnx` files, including external tensor data.
//!
//! [`read_model`] checks the file size against a limit before reading, decodes the protobuf with
//! errors that name the file (not protobuf / truncated / no graph), and loads every tensor
//! stored as external data (relative to the model file's directory) into `raw_data`, so the rest
//! of the crate only ever sees self-contained tensors.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::{
    attribute_type, data_location, GraphProto, ModelProto, StringStringEntryProto, TensorProto,
};
use crate::tensor::numel;
use crate::DataType;

/// Limits applied by [`read_model_with`].
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Largest `.onnx` file accepted (protobuf itself cannot exceed 2 GiB).
    pub max_file_bytes: u64,
    /// Largest total of external data loaded for one model.
    pub max_external_bytes: u64,
    /// Load external data (true) or leave such tensors as references (false).
    pub load_external_data: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_file_bytes: 2 << 30,
            max_external_bytes: 32 << 30,
            load_external_data: true,
        }
    }
}

/// Read an ONNX model file with the default limits (see [`ReadOptions`]).
pub fn read_model(path: impl AsRef<Path>) -> Result<ModelProto> {
    read_model_with(path, &ReadOptions::default())
}

/// Read an ONNX model file.
pub fn read_model_with(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<ModelProto> {
    let path = path.as_ref();
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(Error::Parse {
            path: path.into(),
            message: "is a directory".into(),
        });
    }
    if meta.len() > opts.max_file_bytes {
        return Err(Error::TooLarge {
            path: path.into(),
            size: meta.len(),
            limit: opts.max_file_bytes,
            what: "model file",
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    let mut model = decode_model(&bytes, path)?;
    if opts.load_external_data {
        load_external_data(&mut model, path, opts.max_external_bytes)?;
    }
    Ok(model)
}

/// Load every tensor of `model` stored as external data into `raw_data`. `model_path` is the
/// `.onnx` file the model was decoded from: external files are resolved against its folder and
/// may not leave it. At most `max_bytes` are loaded in all. For callers that already hold the
/// file's bytes (and so need not read it twice, as [`read_model`] would).
pub fn load_external_data(model: &mut ModelProto, model_path: &Path, max_bytes: u64) -> Result<()> {
    let dir = model_path.parent().unwrap_or(Path::new("."));
    let mut loader = ExternalLoader {
        model: model_path,
        dir,
        budget: max_bytes,
    };
    if let Some(g) = model.graph.as_mut() {
        loader.graph(g)?;
    }
    Ok(())
}

/// Decode a model from bytes; `path` is only used in error messages.
pub fn decode_model(bytes: &[u8], path: &Path) -> Result<ModelProto> {
    let parse = |message: String| Error::Parse {
        path: path.into(),
        message,
    };
    if bytes.is_empty() {
        return Err(parse("the file is empty".into()));
    }
    let model = ModelProto::decode(bytes).map_err(|e| {
        parse(format!(
            "protobuf decoding failed ({e}); the file is truncated, corrupt or not ONNX"
        ))
    })?;
    if model.ir_version <= 0 {
        return Err(parse(
            "no ir_version: this is not an ONNX model file".into(),
        ));
    }
    if model.graph.is_none() {
        return Err(parse(
            "the model has no graph (truncated file or not an ONNX model)".into(),
        ));
    }
    if model.opset_import.is_empty() {
        return Err(parse("the model imports no operator set".into()));
    }
    Ok(model)
}

/// Encode a model to bytes (all data inline).
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Options of [`write_model_with`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Store initializers of at least this many bytes in a side file `<model file name>.data`
    /// (ONNX external data). `None`: everything inline, which protobuf limits to 2 GiB.
    pub external_data_threshold: Option<usize>,
}

/// Write a model to `path` with all tensor data inline.
pub fn write_model(model: &ModelProto, path: impl AsRef<Path>) -> Result<()> {
    write_model_with(model, path, &WriteOptions::default())
}

/// Write a model to `path`; see [`WriteOptions`]. The file is written to a temporary name
/// first and renamed, so a failed write never leaves a half-written model behind.
pub fn write_model_with(
    model: &ModelProto,
    path: impl AsRef<Path>,
    opts: &WriteOptions,
) -> Result<()> {
    let path = path.as_ref();
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    let mut model = model.clone();
    if let Some(threshold) = opts.external_data_threshold {
        let file_name = path
            .file_name()
            .map(|f| format!("{}.data", f.to_string_lossy()))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{}: not a file path", path.display()))
            })?;
        let data_path = path.with_file_name(&file_name);
        let mut data = Vec::new();
        if let Some(g) = model.graph.as_mut() {
            for t in g.initializer.iter_mut() {
                if t.raw_data.len() >= threshold {
                    // Align each tensor to 4096 bytes so readers can mmap it.
                    let pad = (4096 - data.len() % 4096) % 4096;
                    data.resize(data.len() + pad, 0);
                    let offset = data.len();
                    data.extend_from_slice(&t.raw_data);
                    let entry = |k: &str, v: String| StringStringEntryProto {
                        key: k.into(),
                        value: v,
                    };
                    t.external_data = vec![
                        entry("location", file_name.clone()),
                        entry("offset", offset.to_string()),
                        entry("length", t.raw_data.len().to_string()),
                    ];
                    t.data_location = data_location::EXTERNAL;
                    t.raw_data = Vec::new();
                }
            }
        }
        if !data.is_empty() {
            write_atomic(&data_path, &data).map_err(io_err(&data_path))?;
        }
    }
    let bytes = model.encode_to_vec();
    if bytes.len() as u64 >= 2 << 30 {
        return Err(Error::InvalidArgument(format!(
            "{}: the model is {} bytes, above protobuf's 2 GiB limit; write it with \
             external data (WriteOptions::external_data_threshold)",
            path.display(),
            bytes.len()
        )));
    }
    write_atomic(path, &bytes).map_err(io_err(path))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

struct ExternalLoader<'a> {
    model: &'a Path,
    dir: &'a Path,
    budget: u64,
}

impl ExternalLoader<'_> {
    fn graph(&mut self, g: &mut GraphProto) -> Result<()> {
        for t in g.initializer.iter_mut() {
            self.tensor(t)?;
        }
        for s in g.sparse_initializer.iter_mut() {
            if let Some(v) = s.values.as_mut() {
                self.tensor(v)?;
            }
            if let Some(i) = s.indices.as_mut() {
                self.tensor(i)?;
            }
        }
        for n in g.node.iter_mut() {
            for a in n.attribute.iter_mut() {
                match a.r#type {
                    attribute_type::TENSOR => {
                        if let Some(t) = a.t.as_mut() {
                            self.tensor(t)?;
                        }
                    }
                    attribute_type::TENSORS => {
                        for t in a.tensors.iter_mut() {
                            self.tensor(t)?;
                        }
                    }
                    attribute_type::GRAPH => {
                        if let Some(sub) = a.g.as_mut() {
                            self.graph(sub)?;
                        }
                    }
                    attribute_type::GRAPHS => {
                        for sub in a.graphs.iter_mut() {
                            self.graph(sub)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn tensor(&mut self, t: &mut TensorProto) -> Result<()> {
        if t.data_location != data_location::EXTERNAL {
            return Ok(());
        }
        let err = |message: String| Error::ExternalData {
            model: self.model.to_path_buf(),
            tensor: t.name.clone(),
            message,
        };
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        let location = get("location").ok_or_else(|| err("no \"location\" entry".into()))?;
        let parse_num = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| err(format!("\"{k}\" is not a number: {v:?}")))
                })
                .transpose()
        };
        let offset = parse_num("offset")?.unwrap_or(0);
        let length = parse_num("length")?;
        let rel = PathBuf::from(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(err(format!(
                "location {location:?} must be a relative path inside the model's directory"
            )));
        }
        let file_path = self.dir.join(&rel);
        let mut f = File::open(&file_path)
            .map_err(|e| err(format!("cannot open {}: {e}", file_path.display())))?;
        let file_len = f
            .metadata()
            .map_err(|e| err(format!("cannot stat {}: {e}", file_path.display())))?
            .len();
        let length = length.unwrap_or(file_len.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > file_len) {
            return Err(err(format!(
                "bytes {offset}..{} lie beyond the end of {} ({file_len} bytes): truncated data file?",
                offset.saturating_add(length),
                file_path.display()
            )));
        }
        let mut expected = None;
        if let Some(size) = DataType(t.data_type).size_bytes() {
            let dims: Option<Vec<usize>> =
                t.dims.iter().map(|&d| usize::try_from(d).ok()).collect();
            if let Some(dims) = dims {
                expected = Some((numel(&dims) * size) as u64);
            }
        }
        if let Some(e) = expected {
            if e != length {
                return Err(err(format!(
                    "length {length} does not match the tensor's shape {:?} ({} bytes)",
                    t.dims, e
                )));
            }
        }
        if length > self.budget {
            return Err(Error::TooLarge {
                path: file_path,
                size: length,
                limit: self.budget,
                what: "external data (remaining budget)",
            });
        }
        self.budget -= length;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| err(format!("seek: {e}")))?;
        let mut buf = vec![0u8; length as usize];
        f.read_exact(&mut buf)
            .map_err(|e| err(format!("read {}: {e}", file_path.display())))?;
        t.raw_data = buf;
        t.external_data.clear();
        t.data_location = data_location::DEFAULT;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::{DataType, Dim};

    fn tiny() -> ModelProto {
        let mut b = GraphBuilder::new(17);
        let x = b.input("x", DataType::FLOAT, &[Dim::Fixed(2), Dim::Fixed(3)]);
        let w = b.constant_f32("w", &[3], &[1.0, 2.0, 3.0]);
        let y = b.op("Mul", &[&x, &w], vec![]);
        b.output(&y, "y");
        b.build().unwrap()
    }

    #[test]
    fn round_trip_inline_and_external() {
        let dir = tempfile::tempdir().unwrap();
        let m = tiny();
        let p = dir.path().join("m.onnx");
        write_model(&m, &p).unwrap();
        assert_eq!(read_model(&p).unwrap(), m);

        let p2 = dir.path().join("ext.onnx");
        write_model_with(
            &m,
            &p2,
            &WriteOptions {
                external_data_threshold: Some(4),
            },
        )
        .unwrap();
        assert!(dir.path().join("ext.onnx.data").exists());
        let raw = decode_model(&std::fs::read(&p2).unwrap(), &p2).unwrap();
        assert_eq!(
            raw.graph.as_ref().unwrap().initializer[0].data_location,
            data_location::EXTERNAL
        );
        assert_eq!(read_model(&p2).unwrap(), m);
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.onnx");
        std::fs::write(&p, b"\x89PNG\r\n\x1a\n not a model").unwrap();
        let e = read_model(&p).unwrap_err().to_string();
        assert!(e.contains("junk.onnx") && e.contains("not"), "{e}");

        let bytes = encode_model(&tiny());
        let p = dir.path().join("trunc.onnx");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_model(&p).unwrap_err().to_string();
        assert!(e.contains("trunc.onnx"), "{e}");

        let e = read_model(dir.path().join("missing.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.onnx"), "{e}");

        let p = dir.path().join("big.onnx");
        std::fs::write(&p, &bytes).unwrap();
        let opts = ReadOptions {
            max_file_bytes: 10,
            ..Default::default()
        };
        let e = read_model_with(&p, &opts).unwrap_err().to_string();
        assert!(e.contains("above the limit"), "{e}");

        // External data that points outside the directory or past the end of the file.
        let p2 = dir.path().join("ext.onnx");
        write_model_with(
            &tiny(),
            &p2,
            &WriteOptions {
                external_data_threshold: Some(4),
            },
        )
        .unwrap();
        std::fs::write(dir.path().join("ext.onnx.data"), [0u8; 3]).unwrap();
        let e = read_model(&p2).unwrap_err().to_string();
        assert!(
            e.contains("tensor \"w\"") && e.contains("beyond the end"),
            "{e}"
        );
    }
}
