//! GGUF reader.
//!
//! The file is memory-mapped: tensor data is borrowed straight from the page cache, so a 100 MB
//! model costs the decoder no heap and the kernel can drop clean pages under memory pressure (the
//! Pi Zero 2 W has 512 MB for everything). Metadata is parsed eagerly and bounds-checked, because
//! a model file is input like any other: a truncated download must give an error, not a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
/// Refuse absurd counts before allocating for them (a corrupt header must not OOM us).
const MAX_COUNT: u64 = 1 << 24;

#[derive(Debug, thiserror::Error)]
/// Errors of reading a GGUF file: what is wrong and where, so a bad download is named.
pub enum GgufError {
    #[error("cannot open model file {path}: {source}")]
    /// The file could not be opened or mapped.
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        /// The OS error.
        source: std::io::Error,
    },
    #[error("{0} is not a GGUF file (bad magic)")]
    /// The file does not start with `GGUF`.
    BadMagic(PathBuf),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    /// A GGUF version this reader does not know.
    Version(u32),
    #[error("GGUF file is truncated or corrupt at byte {0}")]
    /// A read ran past the end of the file (byte offset).
    Truncated(usize),
    #[error("GGUF metadata: {0}")]
    /// A header value that cannot be right (counts, offsets, types).
    Invalid(String),
    #[error("GGUF metadata key `{0}` is missing or has the wrong type")]
    /// A metadata key the model needs is absent or of another type.
    MissingKey(String),
    #[error("tensor `{0}` is missing from the model")]
    /// A tensor the model needs is absent.
    MissingTensor(String),
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 7.
    Bool(bool),
    /// GGUF type 8 (UTF-8).
    Str(String),
    /// GGUF type 9 (elements of one type).
    Array(Vec<Value>),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 12.
    F64(f64),
}

impl Value {
    /// Any non-negative integer value, widened (files differ in the width they use).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// An f32 value (f64 values are not narrowed: that would round).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// An array value's elements.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// ggml tensor element types that tenbit knows by name. Others are kept as `Other(id)` so the
/// file still opens and the engine can name the unsupported type in its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// 4-bit, scale only.
    Q4_0,
    /// 4-bit, scale and min.
    Q4_1,
    /// 5-bit, scale only.
    Q5_0,
    /// 5-bit, scale and min.
    Q5_1,
    /// 8-bit, scale only.
    Q8_0,
    /// 8-bit with a sum (ggml's activation format).
    Q8_1,
    /// 2-bit K-quant.
    Q2K,
    /// 3-bit K-quant.
    Q3K,
    /// 4-bit K-quant (super-blocks of 256).
    Q4K,
    /// 5-bit K-quant.
    Q5K,
    /// 6-bit K-quant.
    Q6K,
    /// 8-bit K-quant.
    Q8K,
    /// bfloat16.
    BF16,
    /// A type id this reader does not name.
    Other(u32),
}

impl GgmlType {
    /// The type of a GGUF type id.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// (elements per block, bytes per block), as in ggml's type traits.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (256, 84),
            Self::Q3K => (256, 110),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
            Self::Other(_) => return None,
        })
    }
}

#[derive(Debug, Clone)]
/// A tensor's directory entry: name, shape, type and where its data lies.
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    /// Size of the data in bytes.
    pub size: usize,
}

impl TensorInfo {
    /// Number of elements (product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file: parsed metadata plus the mapped bytes.
pub struct Gguf {
    path: PathBuf,
    map: Mmap,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Key-value metadata (architecture, hyper-parameters, tokenizer).
    pub metadata: BTreeMap<String, Value>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(GgufError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(GgufError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn count(&mut self) -> Result<usize, GgufError> {
        let n = self.u64()?;
        if n > MAX_COUNT {
            return Err(GgufError::Invalid(format!(
                "count {n} at byte {} is implausible",
                self.pos
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()?;
        if n > self.buf.len() as u64 {
            return Err(GgufError::Truncated(self.pos));
        }
        let bytes = self.take(n as usize)?;
        // Token strings of byte-level BPE vocabularies are valid UTF-8 by construction; a file
        // that is not is corrupt, but we keep going with a lossy copy and let the tokenizer judge.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => Value::Bool(self.arr::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(GgufError::Invalid("nested arrays too deep".into()));
                }
                let inner = self.u32()?;
                let n = self.count()?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(inner, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            t => return Err(GgufError::Invalid(format!("unknown metadata type {t}"))),
        })
    }
}

impl Gguf {
    /// Map and parse a file; every count and offset is checked before use.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the mapping is read-only and private; tenbit never writes model files while
        // running. If another process truncates the file underneath us the OS delivers SIGBUS,
        // the same contract every mmap-based model loader (llama.cpp included) lives with.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, map)
    }

    fn parse(path: PathBuf, map: Mmap) -> Result<Self, GgufError> {
        let mut c = Cursor { buf: &map, pos: 0 };
        if c.u32()? != MAGIC {
            return Err(GgufError::BadMagic(path));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let n_tensors = c.count()?;
        let n_kv = c.count()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd == 0 || nd > 4 {
                return Err(GgufError::Invalid(format!(
                    "tensor {name} has {nd} dimensions"
                )));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(c.u64()?);
            }
            let ty = GgmlType::from_id(c.u32()?);
            let off = c.u64()?;
            raw.push((name, dims, ty, off));
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 || !align.is_power_of_two() {
            return Err(GgufError::Invalid(format!("alignment {align}")));
        }
        let data_start = c.pos.div_ceil(align) * align;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ggml_type, off) in raw {
            let n: u64 = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| GgufError::Invalid(format!("tensor {name} size overflows")))?;
            let size = match ggml_type.block_layout() {
                Some((be, bb)) => {
                    if !n.is_multiple_of(be as u64) {
                        return Err(GgufError::Invalid(format!(
                            "tensor {name}: {n} elements not a multiple of block {be}"
                        )));
                    }
                    (n / be as u64).checked_mul(bb as u64)
                }
                None => Some(0),
            }
            .ok_or_else(|| GgufError::Invalid(format!("tensor {name} size overflows")))?;
            let offset = (data_start as u64)
                .checked_add(off)
                .ok_or(GgufError::Truncated(usize::MAX))?;
            let end = offset
                .checked_add(size)
                .ok_or(GgufError::Truncated(usize::MAX))?;
            if end > map.len() as u64 {
                return Err(GgufError::Truncated(offset as usize));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: offset as usize,
                size: size as usize,
            });
        }
        Ok(Gguf {
            path,
            map,
            version,
            metadata,
            tensors,
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole mapped file (used for content hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required integer value.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// A required f32 value.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get(key)
            .and_then(Value::as_f32)
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// A required string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// A required array value.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        self.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// `general.architecture`, e.g. "llama" or "qwen2".
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// A required tensor's directory entry.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor(name.into()))
    }

    /// The raw (still quantised) bytes of a tensor, borrowed from the mapping.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // In bounds: checked against the file length in `parse`.
        &self.map[info.offset..info.offset + info.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_tmp(bytes: &[u8]) -> tempfile_path::TmpPath {
        tempfile_path::TmpPath::new(bytes)
    }

    /// Tiny self-contained temp-file helper (keeps the crate free of a tempfile dependency).
    mod tempfile_path {
        use std::path::PathBuf;
        pub struct TmpPath(pub PathBuf);
        impl TmpPath {
            pub fn new(bytes: &[u8]) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "tenbit-gguf-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, bytes).unwrap();
                TmpPath(p)
            }
        }
        impl Drop for TmpPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn minimal() -> Vec<u8> {
        let mut b = Vec::new();
        b.write_all(&MAGIC.to_le_bytes()).unwrap();
        b.write_all(&3u32.to_le_bytes()).unwrap();
        b.write_all(&1u64.to_le_bytes()).unwrap(); // tensors
        b.write_all(&1u64.to_le_bytes()).unwrap(); // kv
        let key = b"general.architecture";
        b.write_all(&(key.len() as u64).to_le_bytes()).unwrap();
        b.write_all(key).unwrap();
        b.write_all(&8u32.to_le_bytes()).unwrap();
        b.write_all(&5u64.to_le_bytes()).unwrap();
        b.write_all(b"llama").unwrap();
        let name = b"t";
        b.write_all(&(name.len() as u64).to_le_bytes()).unwrap();
        b.write_all(name).unwrap();
        b.write_all(&1u32.to_le_bytes()).unwrap();
        b.write_all(&4u64.to_le_bytes()).unwrap();
        b.write_all(&0u32.to_le_bytes()).unwrap(); // f32
        b.write_all(&0u64.to_le_bytes()).unwrap();
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for x in [1.0f32, 2.0, 3.0, 4.0] {
            b.write_all(&x.to_le_bytes()).unwrap();
        }
        b
    }

    #[test]
    fn parses_minimal_file() {
        let p = write_tmp(&minimal());
        let g = Gguf::open(&p.0).unwrap();
        assert_eq!(g.architecture().unwrap(), "llama");
        let t = g.tensor("t").unwrap();
        assert_eq!(t.ggml_type, GgmlType::F32);
        let d = g.tensor_data(t);
        assert_eq!(f32::from_le_bytes(d[8..12].try_into().unwrap()), 3.0);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = minimal();
        for cut in 0..full.len() - 1 {
            let p = write_tmp(&full[..cut]);
            assert!(Gguf::open(&p.0).is_err(), "cut at {cut} parsed");
        }
    }

    #[test]
    fn bad_magic_is_named() {
        let mut b = minimal();
        b[0] = b'X';
        let p = write_tmp(&b);
        assert!(matches!(Gguf::open(&p.0), Err(GgufError::BadMagic(_))));
    }
}
