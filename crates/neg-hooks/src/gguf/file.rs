//! The GGUF container (llama.cpp's single-file checkpoint format, versions 2 and 3): header,
//! metadata key/values, tensor directory, aligned tensor data.
//!
//! Why by hand rather than `candle-core`'s `quantized::gguf_file`: that reader allocates every
//! string and array at the length the file claims before reading it (a 40-byte file can ask for
//! 2^64 bytes and abort the process), reports errors without the field or tensor they concern,
//! and brings a second tensor library (gemm, zip, ...) into a crate built on libtorch. The format
//! is small: this reader bounds every length by the bytes actually left in the file, so bad input
//! is always a typed [`GgufError`] naming the file and the field or tensor, never a panic.
//! Numerics are checked against the `gguf` Python package (tests/gguf_parity.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::quant::{self, GgmlType};
use super::GgufError;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// More dimensions than any ggml tensor has (GGML_MAX_DIMS is 4).
const MAX_DIMS: u32 = 4;

/// A metadata value, as typed in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) axis, so a PyTorch shape is the
    /// reverse.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes the tensor occupies (checked against the file size).
    pub size: u64,
}

impl TensorInfo {
    /// The shape in PyTorch order (outermost first).
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: its metadata and tensor directory. Tensor bytes are read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    data: Bytes,
    data_start: usize,
}

/// A GGUF file's bytes: mapped from disk by [`GgufFile::open`], so that reading the metadata
/// (config, tokenizer) costs the header's pages, not the whole checkpoint, and dequantizing
/// holds one copy of the weights instead of two; or owned, by [`GgufFile::parse`].
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            Bytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
        }
    }
}

/// A bounds-checked cursor over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn string(&mut self) -> Option<Result<String, std::string::FromUtf8Error>> {
        let len = self.u64()?;
        self.take(len).map(|b| String::from_utf8(b.to_vec()))
    }
}

impl GgufFile {
    /// Reads and checks the header, metadata and tensor directory of `path`, and that every
    /// tensor's bytes lie inside the file.
    /// The file is memory-mapped: tensor bytes are read from disk when first touched.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this value. Like every reader that maps
        // checkpoints (safetensors, llama.cpp), this assumes no one truncates or rewrites the
        // file while it is open; a checkpoint is not a file that changes under a run.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes(path, Bytes::Mapped(map))
    }

    /// Parses bytes already in memory; `path` names them in errors.
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_bytes(path, Bytes::Owned(data))
    }

    fn from_bytes(path: &Path, data: Bytes) -> Result<Self, GgufError> {
        let bad = |field: String, reason: String| GgufError::Format {
            path: path.to_path_buf(),
            field,
            reason,
        };
        let truncated = |field: &str| bad(field.to_string(), "the file ends inside it".into());
        let mut c = Cursor {
            bytes: &data,
            pos: 0,
        };
        let magic = c.take(4).ok_or_else(|| truncated("magic"))?;
        if magic != MAGIC {
            return Err(bad(
                "magic".into(),
                format!("found {magic:?}, expected \"GGUF\" (is this a GGUF file?)"),
            ));
        }
        let version = c.u32().ok_or_else(|| truncated("version"))?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = c.u64().ok_or_else(|| truncated("tensor_count"))?;
        let n_kv = c.u64().ok_or_else(|| truncated("metadata_kv_count"))?;
        // Each key/value takes at least 12 bytes and each tensor entry at least 24, so counts
        // beyond what is left are malformed, not a reason to allocate.
        if n_kv > c.left() / 12 {
            return Err(bad(
                "metadata_kv_count".into(),
                format!("{n_kv} entries cannot fit in the {} bytes left", c.left()),
            ));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = match c.string() {
                Some(Ok(k)) => k,
                Some(Err(_)) => return Err(bad(format!("metadata key #{i}"), "not UTF-8".into())),
                None => return Err(truncated(&format!("metadata key #{i}"))),
            };
            let ty = c
                .u32()
                .ok_or_else(|| truncated(&format!("metadata {key}")))?;
            let value = read_value(&mut c, ty, 0).map_err(|reason| bad(key.clone(), reason))?;
            metadata.insert(key, value);
        }
        if n_tensors > c.left() / 24 {
            return Err(bad(
                "tensor_count".into(),
                format!(
                    "{n_tensors} tensors cannot fit in the {} bytes left",
                    c.left()
                ),
            ));
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = match c.string() {
                Some(Ok(n)) => n,
                Some(Err(_)) => return Err(bad(format!("tensor #{i} name"), "not UTF-8".into())),
                None => return Err(truncated(&format!("tensor #{i} name"))),
            };
            let tensor_err = |reason: String| GgufError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                reason,
            };
            let n_dims = c
                .u32()
                .ok_or_else(|| tensor_err("the file ends inside its entry".into()))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(tensor_err(format!(
                    "{n_dims} dimensions (expected 1 to {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(
                    c.u64()
                        .ok_or_else(|| tensor_err("the file ends inside its entry".into()))?,
                );
            }
            let raw_type = c
                .u32()
                .ok_or_else(|| tensor_err("the file ends inside its entry".into()))?;
            let offset = c
                .u64()
                .ok_or_else(|| tensor_err("the file ends inside its entry".into()))?;
            let ggml_type = GgmlType::from_id(raw_type)
                .ok_or_else(|| tensor_err(format!("unknown ggml type id {raw_type}")))?;
            let elements = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&e| e > 0)
                .ok_or_else(|| {
                    tensor_err(format!("shape {dims:?} has no elements or overflows"))
                })?;
            let block = ggml_type.block_elements();
            if dims[0] % block != 0 {
                return Err(tensor_err(format!(
                    "innermost dimension {} is not a multiple of {}'s block of {block} values",
                    dims[0],
                    ggml_type.name()
                )));
            }
            let size = (elements / block)
                .checked_mul(ggml_type.block_bytes())
                .ok_or_else(|| tensor_err("size overflows".into()))?;
            infos.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(bad(
                        "general.alignment".into(),
                        format!("{v:?} is not a positive power of two"),
                    ))
                }
            },
        };
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let data_len = (data.len() as u64).saturating_sub(data_start);
        for t in &infos {
            if t.offset % alignment != 0 {
                return Err(GgufError::Tensor {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    reason: format!("offset {} is not aligned to {alignment}", t.offset),
                });
            }
            if t.offset
                .checked_add(t.size)
                .is_none_or(|end| end > data_len)
            {
                return Err(GgufError::Tensor {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    reason: format!(
                        "its {} bytes of {} {:?} at offset {} run past the end of the data \
                         ({data_len} bytes): the file is truncated or the entry is wrong",
                        t.size,
                        t.ggml_type.name(),
                        t.dims,
                        t.offset
                    ),
                });
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = infos.iter().find(|t| !seen.insert(t.name.as_str())) {
            return Err(GgufError::Tensor {
                path: path.to_path_buf(),
                tensor: dup.name.clone(),
                reason: "listed twice".into(),
            });
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors: infos,
            data_start: data_start as usize,
            data,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (already bounds-checked by [`GgufFile::parse`]).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset as usize;
        &self.data[start..start + info.size as usize]
    }

    /// A tensor dequantized to f32, with its PyTorch-order shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<i64>), GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let values =
            quant::dequantize(info.ggml_type, self.tensor_bytes(info)).map_err(|reason| {
                GgufError::Tensor {
                    path: self.path.clone(),
                    tensor: name.to_string(),
                    reason,
                }
            })?;
        Ok((values, info.torch_shape()))
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    fn wrong_type(&self, key: &str, v: &MetaValue, want: &str) -> GgufError {
        GgufError::Format {
            path: self.path.clone(),
            field: key.to_string(),
            reason: format!("expected {want}, found a {} value", v.type_name()),
        }
    }

    /// The value of `key` converted by `conv` (`want` names the type in errors): `None` when
    /// absent, an error when present with another type.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        conv: impl Fn(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        self.metadata
            .get(key)
            .map(|v| conv(v).ok_or_else(|| self.wrong_type(key, v, want)))
            .transpose()
    }

    /// A required unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.u64_opt(key)?.ok_or_else(|| self.missing(key))
    }

    /// An optional unsigned integer (present with the wrong type is an error).
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "a non-negative integer", MetaValue::as_u64)
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a number", MetaValue::as_f64)
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.str_opt(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    /// An optional array whose items all convert with `item`.
    pub fn array_opt<T>(
        &self,
        key: &str,
        want: &str,
        item: impl Fn(&MetaValue) -> Option<T>,
    ) -> Result<Option<Vec<T>>, GgufError> {
        let Some(arr) = self.typed(key, &format!("an array of {want}"), MetaValue::as_array)?
        else {
            return Ok(None);
        };
        arr.iter()
            .enumerate()
            .map(|(i, x)| item(x).ok_or_else(|| self.wrong_type(&format!("{key}[{i}]"), x, want)))
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

/// Reads one value of type id `ty`. Arrays nest at most a few levels (ggml writes none nested).
fn read_value(c: &mut Cursor, ty: u32, depth: u32) -> Result<MetaValue, String> {
    let ends = || "the file ends inside its value".to_string();
    Ok(match ty {
        0 => MetaValue::U8(c.u8().ok_or_else(ends)?),
        1 => MetaValue::I8(c.u8().ok_or_else(ends)? as i8),
        2 => MetaValue::U16(c.u16().ok_or_else(ends)?),
        3 => MetaValue::I16(c.u16().ok_or_else(ends)? as i16),
        4 => MetaValue::U32(c.u32().ok_or_else(ends)?),
        5 => MetaValue::I32(c.u32().ok_or_else(ends)? as i32),
        6 => MetaValue::F32(f32::from_bits(c.u32().ok_or_else(ends)?)),
        7 => match c.u8().ok_or_else(ends)? {
            0 => MetaValue::Bool(false),
            1 => MetaValue::Bool(true),
            b => return Err(format!("bool byte {b} is neither 0 nor 1")),
        },
        8 => MetaValue::String(
            c.string()
                .ok_or_else(ends)?
                .map_err(|_| "string is not UTF-8".to_string())?,
        ),
        9 => {
            if depth >= 4 {
                return Err("arrays nested too deeply".into());
            }
            let item_ty = c.u32().ok_or_else(ends)?;
            let len = c.u64().ok_or_else(ends)?;
            // Every item takes at least one byte: a longer array cannot be in the file.
            if len > c.left() {
                return Err(format!(
                    "array of {len} items cannot fit in the {} bytes left",
                    c.left()
                ));
            }
            let mut items = Vec::with_capacity(len as usize);
            for _ in 0..len {
                items.push(read_value(c, item_ty, depth + 1)?);
            }
            MetaValue::Array(items)
        }
        10 => MetaValue::U64(c.u64().ok_or_else(ends)?),
        11 => MetaValue::I64(c.u64().ok_or_else(ends)? as i64),
        12 => MetaValue::F64(f64::from_bits(c.u64().ok_or_else(ends)?)),
        other => return Err(format!("unknown value type id {other}")),
    })
}
