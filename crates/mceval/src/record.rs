//! Records (one JSON object per benchmark item, field order kept) and the readers and writers
//! for the file formats MCEval8K and its sources use: pretty JSON arrays, JSONL and CSV.
use std::fmt;
use std::io;
use std::path::Path;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// One benchmark item: a JSON object whose fields keep their file order, so that a record
/// read and written again is byte-identical in the published format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    fields: Vec<(String, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }

    /// Sets `field` (replacing its value in place, or appending it).
    pub fn set(&mut self, field: impl Into<String>, value: impl Into<Value>) {
        let field = field.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == field) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((field, value)),
        }
    }

    /// Builder form of [`Record::set`].
    pub fn with(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set(field, value);
        self
    }

    /// Moves `field` (if present) after all other fields.
    pub fn move_to_end(&mut self, field: &str) {
        if let Some(pos) = self.fields.iter().position(|(k, _)| k == field) {
            let entry = self.fields.remove(pos);
            self.fields.push(entry);
        }
    }

    /// The fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `record["lang"]` as a string, when present.
    pub fn lang(&self) -> Option<&str> {
        self.get("lang").and_then(Value::as_str)
    }

    /// A canonical identity string (keys sorted, compact JSON): two records are the same item
    /// exactly when their keys are equal. Used by the audit and the re-split.
    pub fn key(&self) -> String {
        let mut sorted: Vec<&(String, Value)> = self.fields.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let map: serde_json::Map<String, Value> = sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Value::Object(map).to_string()
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match d.deserialize_any(ItemVisitor)? {
            Item::Record(r) => Ok(r),
            Item::Other(kind) => Err(de::Error::custom(format!(
                "expected a JSON object, found {kind}"
            ))),
        }
    }
}

/// An array element: a record, or the kind of the non-object value found instead (so that the
/// error can name the element's index).
enum Item {
    Record(Record),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Item, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            match fields.iter_mut().find(|(key, _)| *key == k) {
                // JSON objects with repeated keys keep the last value, like Python's json.
                Some(slot) => slot.1 = v,
                None => fields.push((k, v)),
            }
        }
        Ok(Item::Record(Record { fields }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Item, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Item::Other("an array"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Item, E> {
        Ok(Item::Other("a string"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Item, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Item, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Item, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Item, E> {
        Ok(Item::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Item, E> {
        Ok(Item::Other("null"))
    }
}

/// Python's `str(value)` for a JSON value, as the published prompts were built with f-strings:
/// null -> `None`, booleans -> `True`/`False`, floats keep `.0`, lists use Python's repr.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            // Python picks single quotes unless the string has a single quote and no double one.
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// The text of `path`; an unreadable file is an [`Error::Io`] naming it.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// `items`, unless there are none: then [`Error::Empty`] for `path`.
pub(crate) fn non_empty<T>(path: &Path, items: Vec<T>) -> Result<Vec<T>> {
    if items.is_empty() {
        return Err(Error::Empty { path: path.into() });
    }
    Ok(items)
}

/// Reads a JSON array of records (the published `<split>.json` format).
///
/// Errors: unreadable file, empty file or empty array ([`Error::Empty`]), malformed JSON with
/// line and column, or an element that is not an object (naming its index).
pub fn read_json_records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    parse_json_records(&text, path)
}

/// [`read_json_records`] on text already in memory; `path` is only used in errors.
pub fn parse_json_records(text: &str, path: &Path) -> Result<Vec<Record>> {
    if text.trim().is_empty() {
        return Err(Error::Empty { path: path.into() });
    }
    let items: Vec<Item> = serde_json::from_str(text).map_err(|e| {
        Error::malformed(path, "JSON", format!("{e} (expected an array of objects)"))
    })?;
    non_empty(path, items)?
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Item::Record(r) => Ok(r),
            Item::Other(kind) => Err(Error::malformed(
                path,
                "JSON",
                format!("record {index}: expected an object, found {kind}"),
            )),
        })
        .collect()
}

/// Reads JSON Lines: one object per non-blank line. Record index = line number - 1.
pub fn read_jsonl_records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| {
            Error::malformed(
                path,
                "JSONL",
                format!("line {} (record {}): {e}", i + 1, out.len()),
            )
        })?;
        out.push(record);
    }
    non_empty(path, out)
}

/// Reads CSV with a header row (RFC 4180: quoted fields, doubled quotes, newlines inside
/// quotes). Every value is a JSON string. Written by hand because the workspace has no CSV
/// crate and this small, fully specified format does not justify a new dependency.
pub fn read_csv_records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    let rows = parse_csv(&text).map_err(|message| Error::malformed(path, "CSV", message))?;
    let mut rows = rows.into_iter();
    let header = rows
        .next()
        .ok_or_else(|| Error::Empty { path: path.into() })?;
    let mut out = Vec::new();
    for (index, row) in rows.enumerate() {
        if row.len() != header.len() {
            return Err(Error::malformed(
                path,
                "CSV",
                format!(
                    "record {index}: {} fields, header has {}",
                    row.len(),
                    header.len()
                ),
            ));
        }
        let mut r = Record::new();
        for (k, v) in header.iter().zip(row) {
            r.set(k.clone(), Value::String(v));
        }
        out.push(r);
    }
    non_empty(path, out)
}

fn parse_csv(text: &str) -> std::result::Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut line = 1;
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                row_has_content = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                row_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if row_has_content || !field.is_empty() {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                row_has_content = false;
                line += 1;
            }
            _ => {
                field.push(c);
                row_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err(format!(
            "unterminated quoted field at end of file (line {line})"
        ));
    }
    if row_has_content || !field.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// Serialises records as the published files are written (pandas
/// `to_json(orient="records", indent=1)`: 1-space indent, `"key":value`, `/` escaped as `\/`,
/// non-ASCII escaped as `\uXXXX`), so that published files round-trip byte for byte.
pub fn to_published_json(records: &[Record]) -> Result<String> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonFormatter::new());
    records.serialize(&mut ser).map_err(|e| Error::Build {
        task: "serialise".into(),
        message: e.to_string(),
    })?;
    String::from_utf8(buf).map_err(|e| Error::Build {
        task: "serialise".into(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, then a rename,
/// so that a reader never sees a half-written file and a failed run leaves nothing behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes records to `path` in the published format, atomically.
pub fn write_published_json(path: &Path, records: &[Record]) -> Result<()> {
    write_atomic(path, to_published_json(records)?.as_bytes())
}

/// serde_json's pretty printer adjusted to pandas' ujson output: 1-space indent, no space
/// after `:`, ASCII-only strings (`\uXXXX`, surrogate pairs above U+FFFF) and `\/`.
struct PythonFormatter<'a> {
    inner: serde_json::ser::PrettyFormatter<'a>,
}

impl PythonFormatter<'_> {
    fn new() -> Self {
        Self {
            inner: serde_json::ser::PrettyFormatter::with_indent(b" "),
        }
    }
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.inner.$name(w $(, $arg)*)
        }
    )*};
}

impl serde_json::ser::Formatter for PythonFormatter<'_> {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        end_object_value();
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b":")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c == '/' {
                w.write_all(b"\\/")?;
            } else if c.is_ascii() && c != '\u{7f}' {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}
