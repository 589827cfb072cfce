//! Loading lists from TOML/JSON files and dumping lists as text or JSON.
//!
//! File format (TOML shown; JSON has the same shape): general keys at top level, type keys in
//! a section named after the type. Names are those of [`Key::name`] without the section.
//!
//! ```toml
//! types = ["image"]                 # raw, image, tensor, array, image_pyramid
//! accessor_name = "camera"
//! accessor_kind = "camera"          # cpu, camera, display, gpu, vfio, device
//! required_permission = "read_write"
//! need_cpu_access = false
//!
//! [image]
//! format = "NV12"
//! width = 1920
//! height = 1080
//! pitch_align = 64
//! padding = { top = 0, bottom = 8, left = 0, right = 0 }
//! modifiers = ["NVIDIA_BLOCK_LINEAR_2D(s=1,g=2,k=0x06,h=4)", "LINEAR"]  # or numbers
//! modifier_usage = "scanout"        # video, render, sampling, cpu
//! ```
//!
//! Errors name the file, the line (TOML) and the key.

use super::{
    AccessorKind, AttrError, AttrList, BackendKind, BufferType, BufferTypes, ColorStd, DataType,
    Key, KeyGroup, LayoutKind, Padding, Permission, ScanType, Value, ValueKind,
};
use crate::model::GpuId;
use crate::model::{modifier, ModifierUsage, PixelFormat};
use serde_json::{json, Map as JsonMap, Value as Json};
use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

/// A list file could not be used. Names the file, the line (where known) and the key.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    /// The file (or `<input>` for text not read from a file).
    pub path: String,
    /// 1-based line, where known (TOML).
    pub line: Option<usize>,
    /// The key (as written in the file), where one is concerned.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// A parsed value with the line it came from (format independent).
#[derive(Debug, Clone)]
enum Node {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    Table(Vec<(String, Option<usize>, Node)>),
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Str(_) => "a string",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn from_toml(text: &str, v: &toml::de::DeValue<'_>) -> Result<Node, String> {
    use toml::de::DeValue as D;
    Ok(match v {
        D::String(s) => Node::Str(s.to_string()),
        D::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            Node::Int(
                i128::from_str_radix(&digits, i.radix())
                    .map_err(|_| format!("integer {i} out of range"))?,
            )
        }
        D::Float(f) => Node::Float(
            f.as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("bad float {}", f.as_str()))?,
        ),
        D::Boolean(b) => Node::Bool(*b),
        D::Datetime(_) => return Err("dates are not attribute values".to_string()),
        D::Array(a) => Node::Array(
            a.iter()
                .map(|x| from_toml(text, x.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        D::Table(t) => Node::Table(
            t.iter()
                .map(|(k, x)| {
                    Ok((
                        k.get_ref().to_string(),
                        Some(line_of(text, k.span().start)),
                        from_toml(text, x.get_ref())?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

fn from_json(v: &Json) -> Result<Node, String> {
    Ok(match v {
        Json::Null => return Err("null is not an attribute value".to_string()),
        Json::Bool(b) => Node::Bool(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Node::Int(i128::from(u)),
            (_, Some(i), _) => Node::Int(i128::from(i)),
            (_, _, Some(f)) => Node::Float(f),
            _ => return Err(format!("bad number {n}")),
        },
        Json::String(s) => Node::Str(s.clone()),
        Json::Array(a) => Node::Array(a.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(o) => Node::Table(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), None, from_json(x)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Parses a list from TOML text; `path` is used in error messages.
pub fn parse_toml(text: &str, path: &str) -> Result<AttrList, FileError> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| FileError {
        path: path.to_string(),
        line: e.span().map(|s| line_of(text, s.start)),
        key: None,
        message: format!("TOML syntax: {}", e.message().trim()),
    })?;
    let mut entries = Vec::new();
    for (k, v) in doc.get_ref().iter() {
        let line = Some(line_of(text, k.span().start));
        let node = from_toml(text, v.get_ref()).map_err(|m| FileError {
            path: path.to_string(),
            line,
            key: Some(k.get_ref().to_string()),
            message: m,
        })?;
        entries.push((k.get_ref().to_string(), line, node));
    }
    build(entries, path)
}

/// Parses a list from JSON text; `path` is used in error messages.
pub fn parse_json(text: &str, path: &str) -> Result<AttrList, FileError> {
    let v: Json = serde_json::from_str(text).map_err(|e| FileError {
        path: path.to_string(),
        line: Some(e.line()),
        key: None,
        message: format!("JSON syntax: {e}"),
    })?;
    let node = from_json(&v).map_err(|m| FileError {
        path: path.to_string(),
        line: None,
        key: None,
        message: m,
    })?;
    match node {
        Node::Table(entries) => build(entries, path),
        other => Err(FileError {
            path: path.to_string(),
            line: None,
            key: None,
            message: format!(
                "expected an object at top level, found {}",
                other.type_name()
            ),
        }),
    }
}

/// The largest list file [`load`] reads. Real lists are a few hundred bytes; the bound keeps a
/// wrong path (`/dev/zero`, a FIFO fed without end, a huge file) from exhausting memory.
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// Loads a list from a file: JSON if the name ends in `.json`, TOML otherwise. Files larger than
/// [`MAX_FILE_LEN`] are refused.
pub fn load(path: &Path) -> Result<AttrList, FileError> {
    use std::io::Read as _;
    let p = path.display().to_string();
    let err = |message: String| FileError {
        path: p.clone(),
        line: None,
        key: None,
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut text = String::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(err(format!(
            "larger than {MAX_FILE_LEN} bytes: not an attribute list"
        )));
    }
    if path.extension().is_some_and(|e| e == "json") {
        parse_json(&text, &p)
    } else {
        parse_toml(&text, &p)
    }
}

fn build(entries: Vec<(String, Option<usize>, Node)>, path: &str) -> Result<AttrList, FileError> {
    // Flatten sections into (key, line, node).
    let mut flat: Vec<(Key, String, Option<usize>, Node)> = Vec::new();
    let err = |line, key: &str, message: String| FileError {
        path: path.to_string(),
        line,
        key: Some(key.to_string()),
        message,
    };
    for (name, line, node) in entries {
        let section = [
            KeyGroup::Raw,
            KeyGroup::Image,
            KeyGroup::Tensor,
            KeyGroup::Array,
            KeyGroup::Pyramid,
        ]
        .into_iter()
        .find(|g| g.section() == name);
        match (section, node) {
            (Some(_), Node::Table(inner)) => {
                for (n, l, v) in inner {
                    let full = format!("{name}.{n}");
                    let key = Key::from_name(&full)
                        .ok_or_else(|| err(l, &full, "unknown key".to_string()))?;
                    flat.push((key, full, l, v));
                }
            }
            (Some(_), other) => {
                return Err(err(
                    line,
                    &name,
                    format!("expected a table, found {}", other.type_name()),
                ))
            }
            (None, node) => {
                let key = Key::from_name(&name)
                    .filter(|k| k.group() == KeyGroup::General || k.is_output())
                    .ok_or_else(|| err(line, &name, "unknown key".to_string()))?;
                flat.push((key, name, line, node));
            }
        }
    }
    // `types` first: type keys need it.
    flat.sort_by_key(|(k, ..)| *k != Key::Types);
    let mut list = AttrList::new();
    for (key, name, line, node) in flat {
        let value = to_value(key, &node).map_err(|m| err(line, &name, m))?;
        list.set(key, value)
            .map_err(|e| err(line, &name, e.to_string()))?;
    }
    Ok(list)
}

fn enum_name<T>(node: &Node, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    match node {
        Node::Str(s) => f(s).ok_or_else(|| format!("unknown {what} {s:?}")),
        other => Err(format!(
            "expected a {what} name, found {}",
            other.type_name()
        )),
    }
}

fn int(node: &Node, max: u64) -> Result<u64, String> {
    match node {
        Node::Int(i) if *i >= 0 && *i <= i128::from(max) => Ok(*i as u64),
        Node::Int(i) => Err(format!("{i} is out of range (0 to {max})")),
        other => Err(format!("expected an integer, found {}", other.type_name())),
    }
}

/// A modifier: a name or hex string ([`modifier::parse`]) or an integer.
fn modifier_of(node: &Node) -> Result<u64, String> {
    match node {
        Node::Str(s) => modifier::parse(s),
        n => int(n, u64::MAX),
    }
}

fn gpu(node: &Node) -> Result<GpuId, String> {
    match node {
        Node::Str(s) => GpuId::parse(s).map_err(|e| e.to_string()),
        o => Err(format!(
            "expected a GPU UUID string, found {}",
            o.type_name()
        )),
    }
}

fn to_value(key: Key, node: &Node) -> Result<Value, String> {
    Ok(match key.value_kind() {
        ValueKind::Bool => match node {
            Node::Bool(b) => Value::Bool(*b),
            other => {
                return Err(format!(
                    "expected true or false, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::U32 => Value::U32(int(node, u64::from(u32::MAX))? as u32),
        ValueKind::U64 if key == Key::ImageModifier => Value::U64(modifier_of(node)?),
        ValueKind::Modifiers => match node {
            Node::Array(a) => Value::Modifiers(
                a.iter()
                    .map(modifier_of)
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            ),
            n => Value::Modifiers(vec![modifier_of(n)?].into()),
        },
        ValueKind::ModifierUsage => {
            Value::ModifierUsage(enum_name(node, "modifier usage", ModifierUsage::from_name)?)
        }
        ValueKind::U64 => Value::U64(int(node, u64::MAX)?),
        ValueKind::F64 => match node {
            Node::Float(f) => Value::F64(*f),
            Node::Int(i) => Value::F64(*i as f64),
            other => return Err(format!("expected a number, found {}", other.type_name())),
        },
        ValueKind::Str => match node {
            Node::Str(s) => Value::Str(s.clone()),
            other => return Err(format!("expected a string, found {}", other.type_name())),
        },
        ValueKind::U64List => match node {
            Node::Array(a) => Value::U64List(
                a.iter()
                    .map(|n| int(n, u64::MAX))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "expected an array of integers, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::StrList => match node {
            Node::Array(a) => Value::StrList(
                a.iter()
                    .map(|n| match n {
                        Node::Str(s) => Ok(s.clone()),
                        o => Err(format!("expected strings, found {}", o.type_name())),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(format!(
                    "expected an array of strings, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::Types => {
            let items: Vec<&Node> = match node {
                Node::Array(a) => a.iter().collect(),
                n => vec![n],
            };
            let mut ts = Vec::new();
            for n in items {
                ts.push(enum_name(n, "buffer type", BufferType::from_name)?);
            }
            Value::Types(BufferTypes::of(&ts))
        }
        ValueKind::Permission => {
            Value::Permission(enum_name(node, "permission", Permission::from_name)?)
        }
        ValueKind::Accessor => {
            Value::Accessor(enum_name(node, "accessor kind", AccessorKind::from_name)?)
        }
        ValueKind::Backend => Value::Backend(enum_name(node, "backend", BackendKind::from_name)?),
        ValueKind::Format => match node {
            Node::Str(s) => Value::Format(PixelFormat::from_name(s).map_err(|e| e.to_string())?),
            other => {
                return Err(format!(
                    "expected a format name, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::Layout => Value::Layout(enum_name(node, "layout", LayoutKind::from_name)?),
        ValueKind::ColorStd => {
            Value::ColorStd(enum_name(node, "color standard", ColorStd::from_name)?)
        }
        ValueKind::Scan => Value::Scan(enum_name(node, "scan type", ScanType::from_name)?),
        ValueKind::DataType => Value::DataType(enum_name(node, "data type", DataType::from_name)?),
        ValueKind::GpuIdSet => match node {
            Node::Array(a) => Value::GpuIds(a.iter().map(gpu).collect::<Result<_, _>>()?),
            other => {
                return Err(format!(
                    "expected an array of GPU UUIDs, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::GpuId => Value::Gpu(gpu(node)?),
        ValueKind::GpuFlags => match node {
            Node::Table(t) => {
                let mut l = Vec::new();
                for (name, _, v) in t {
                    let id = GpuId::parse(name).map_err(|e| e.to_string())?;
                    match v {
                        Node::Bool(b) => l.push((id, *b)),
                        o => {
                            return Err(format!("expected true or false, found {}", o.type_name()))
                        }
                    }
                }
                Value::GpuFlags(l)
            }
            other => {
                return Err(format!(
                    "expected a table of GPU UUID = true/false, found {}",
                    other.type_name()
                ))
            }
        },
        ValueKind::Padding => match node {
            Node::Table(t) => {
                let mut p = Padding::default();
                for (name, _, v) in t {
                    let n = int(v, u64::from(u32::MAX))? as u32;
                    match name.as_str() {
                        "top" => p.top = n,
                        "bottom" => p.bottom = n,
                        "left" => p.left = n,
                        "right" => p.right = n,
                        other => return Err(format!("unknown padding side {other:?}")),
                    }
                }
                Value::Padding(p)
            }
            other => {
                return Err(format!(
                    "expected a table of sides, found {}",
                    other.type_name()
                ))
            }
        },
    })
}

/// The JSON form of a value (as the loader reads it).
pub fn value_to_json(key: Key, v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::U32(n) => json!(n),
        Value::U64(n) if matches!(key, Key::ImageModifier | Key::OutModifier) => {
            json!(modifier::name(*n))
        }
        Value::U64(n) => json!(n),
        Value::F64(f) => json!(f),
        Value::Str(s) => json!(s),
        Value::U64List(l) => json!(l),
        Value::StrList(l) => json!(l),
        Value::Types(t) => Json::Array(t.iter().map(|t| json!(t.name())).collect()),
        Value::Permission(p) => json!(match p {
            Permission::ReadOnly => "read_only",
            Permission::ReadWrite => "read_write",
        }),
        Value::Accessor(a) => json!(a.to_string()),
        Value::Backend(b) => json!(b.to_string()),
        Value::Format(f) => json!(f.name()),
        Value::Layout(x) => json!(x.name()),
        Value::ColorStd(x) => json!(x.name()),
        Value::Scan(x) => json!(x.name()),
        Value::DataType(x) => json!(x.name()),
        Value::Modifiers(l) => Json::Array(l.iter().map(|m| json!(modifier::name(*m))).collect()),
        Value::ModifierUsage(u) => json!(u.name()),
        Value::Padding(p) => {
            json!({"top": p.top, "bottom": p.bottom, "left": p.left, "right": p.right})
        }
        Value::GpuIds(l) => Json::Array(l.iter().map(|g| json!(g.to_string())).collect()),
        Value::Gpu(g) => json!(g.to_string()),
        Value::GpuFlags(l) => {
            Json::Object(l.iter().map(|(g, b)| (g.to_string(), json!(b))).collect())
        }
    }
}

/// The JSON object of key/value pairs: general keys and outputs at top level, type keys in
/// their section (the shape [`parse_json`] reads back). Used by the list and reconciled dumps.
pub fn pairs_to_json<'a>(pairs: impl Iterator<Item = (Key, &'a Value)>) -> Json {
    let mut top = JsonMap::new();
    for (k, v) in pairs {
        let j = value_to_json(k, v);
        let sec = k.group().section();
        if sec.is_empty() || k.is_output() {
            top.insert(k.name().to_string(), j);
        } else {
            let e = top
                .entry(sec.to_string())
                .or_insert_with(|| Json::Object(JsonMap::new()));
            if let Json::Object(m) = e {
                m.insert(k.short_name().to_string(), j);
            }
        }
    }
    Json::Object(top)
}

/// The JSON form of an unreconciled list (the shape [`parse_json`] reads back).
pub fn list_to_json(list: &AttrList) -> Json {
    pairs_to_json(list.iter())
}

/// A readable dump of an unreconciled list: one `key = value` line per key.
pub fn list_to_text(list: &AttrList) -> String {
    let mut s = String::new();
    for (k, v) in list.iter() {
        let _ = writeln!(s, "{k} = {v}");
    }
    s
}

/// Refuses `AttrError`s as file errors for a given file (used by callers building lists from
/// other sources).
pub fn attr_error(path: &str, key: Key, e: AttrError) -> FileError {
    FileError {
        path: path.to_string(),
        line: None,
        key: Some(key.name().to_string()),
        message: e.to_string(),
    }
}
