//! How keys and values are shown, parsed from arguments, and written as
//! JSON; and the output sink every subcommand prints through.
//!
//! One spelling of a byte string in every text output (get, scan, sst
//! dump, log dump, manifest dump, repair reports, messages): printable
//! UTF-8 as is, else every byte that is not printable ASCII as `\xNN`
//! (and `\n`, `\r`, `\t`, `\\`), as `ldb` prints. With `--hex`: `0x`
//! and lowercase hex digits (`0x00ff10`), as `ldb --hex` prints; `--hex`
//! arguments are read as hex, with or without the `0x`.
//!
//! One convention in every JSON output: a byte string `name` is written
//! twice, as `"name"` (the text spelling above, for people) and as
//! `"name_hex"` (its exact bytes as lowercase hex without `0x`, for
//! scripts); a missing one (a tombstone's value) is `null` in both. `load`
//! reads `name_hex` when present, else `name` as the raw UTF-8 bytes.

use std::io::{self, BufWriter, Stdout, Write};

use serde_json::{Map, Value};

use crate::error::{Result, ToolError};

/// Options that shape every line of output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Keys and values as hex.
    pub hex: bool,
    /// No progress on stderr (bars or lines).
    pub quiet: bool,
}

/// Where a subcommand's output goes: buffered standard output.
pub struct Out {
    /// How to show things.
    pub style: Style,
    sink: BufWriter<Stdout>,
}

impl Out {
    /// Output to stdout in `style`.
    pub fn new(style: Style) -> Self {
        Out {
            style,
            sink: BufWriter::new(io::stdout()),
        }
    }

    /// Whether JSON output was asked for.
    pub fn json(&self) -> bool {
        self.style.json
    }

    /// Writes one line of text.
    ///
    /// # Errors
    /// [`ToolError::Output`] if stdout cannot be written.
    pub fn line(&mut self, text: impl AsRef<str>) -> Result<()> {
        writeln!(self.sink, "{}", text.as_ref()).map_err(ToolError::Output)
    }

    /// Writes bytes as they are (a generated completion script).
    ///
    /// # Errors
    /// As [`line`](Self::line).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sink.write_all(bytes).map_err(ToolError::Output)
    }

    /// Writes one JSON object as a line.
    ///
    /// # Errors
    /// As [`line`](Self::line).
    pub fn object(&mut self, object: Map<String, Value>) -> Result<()> {
        self.line(Value::Object(object).to_string())
    }

    /// Shows bytes as text in this output's style.
    pub fn show(&self, bytes: &[u8]) -> String {
        show_bytes(bytes, self.style.hex)
    }

    /// Puts `bytes` into `object` under `name` and `name_hex`.
    pub fn put_bytes(&self, object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
        put_bytes(object, name, bytes);
    }

    /// Shows the byte string `name` of a JSON object made by
    /// [`put_bytes`] in this output's style; `None` if it is absent or
    /// `null`.
    pub fn show_field(&self, object: &Map<String, Value>, name: &str) -> Option<String> {
        show_field(object, name, self.style.hex)
    }

    /// Flushes buffered output.
    ///
    /// # Errors
    /// As [`line`](Self::line).
    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush().map_err(ToolError::Output)
    }
}

/// Shows bytes as text: printable UTF-8 as is, anything else escaped, or
/// everything as `0x` hex when `hex` is set.
pub fn show_bytes(bytes: &[u8], hex: bool) -> String {
    if hex {
        return format!("0x{}", to_hex(bytes));
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control() && c != '\\') => s.to_owned(),
        _ => escape(bytes),
    }
}

/// Escapes bytes: printable ASCII as is, `\\`, `\n`, `\r`, `\t`, and
/// `\xNN` for every other byte.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Bytes in the text spelling, in double quotes, for messages that
/// quote a key (repair's reports).
pub fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", show_bytes(bytes, false))
}

/// Lowercase hex, two digits a byte.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex (upper or lower case, even length, `0x` or `0X` allowed
/// before it).
///
/// # Errors
/// [`ToolError::Invalid`] naming the bad input.
pub fn from_hex(text: &str) -> Result<Vec<u8>> {
    let bad = || ToolError::Invalid(format!("{text:?} is not an even number of hex digits"));
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Turns a command-line key or value into bytes: hex when `hex` is set,
/// else the argument's UTF-8 bytes.
///
/// # Errors
/// [`ToolError::Invalid`] for bad hex.
pub fn arg_bytes(arg: &str, hex: bool) -> Result<Vec<u8>> {
    if hex {
        from_hex(arg)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Puts `bytes` into `object` under `name` (the text spelling) and
/// `name_hex` (exact, as hex).
pub fn put_bytes(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    object.insert(name.to_owned(), Value::from(show_bytes(bytes, false)));
    object.insert(format!("{name}_hex"), Value::from(to_hex(bytes)));
}

/// Shows the byte string `name` of `object` (made by [`put_bytes`]) as
/// [`show_bytes`] does; `None` if it is absent or `null`.
pub fn show_field(object: &Map<String, Value>, name: &str, hex: bool) -> Option<String> {
    match get_bytes(object, name) {
        Ok(Some(Some(bytes))) => Some(show_bytes(&bytes, hex)),
        _ => None,
    }
}

/// Puts a missing byte string (a tombstone's value) into `object`:
/// `null` under `name` and `name_hex`.
pub fn put_null(object: &mut Map<String, Value>, name: &str) {
    object.insert(name.to_owned(), Value::Null);
    object.insert(format!("{name}_hex"), Value::Null);
}

/// Reads a byte string back from `object`: `name_hex` as hex when present,
/// else `name` as its UTF-8 bytes; `Some(None)` when the field is JSON
/// `null`, `None` when it is absent.
///
/// # Errors
/// [`ToolError::Invalid`] if the field has the wrong type or bad hex.
pub fn get_bytes(object: &Map<String, Value>, name: &str) -> Result<Option<Option<Vec<u8>>>> {
    let wrong = |field: &str| ToolError::Invalid(format!("field {field:?} must be a string"));
    let hex_name = format!("{name}_hex");
    if let Some(value) = object.get(&hex_name) {
        return match value {
            Value::Null => Ok(Some(None)),
            Value::String(s) => Ok(Some(Some(from_hex(s)?))),
            _ => Err(wrong(&hex_name)),
        };
    }
    match object.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.as_bytes().to_vec()))),
        Some(_) => Err(wrong(name)),
    }
}

/// A byte count for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A byte count from an argument: plain bytes (`1048576`) or with a
/// `K`, `M` or `G` suffix in either case, powers of 1024 (`512M`), at
/// least 1; `what` names the argument in the error.
///
/// # Errors
/// [`ToolError::Invalid`] for anything else (a fraction, a negative
/// number, another suffix, zero) or a count past the machine's `usize`.
pub fn parse_size(text: &str, what: &str) -> Result<usize> {
    let invalid = |why: &str| {
        ToolError::Invalid(format!(
            "{what} {text:?} {why} (a byte count such as 268435456, 256M or 1G)"
        ))
    };
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("is not a size"));
    }
    let n: usize = digits.parse().map_err(|_| invalid("is too large"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err(invalid("is not a size above 0")),
        Some(bytes) => Ok(bytes),
        None => Err(invalid("is too large")),
    }
}

/// Builds a JSON object from `(name, value)` pairs.
pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_printable_text_as_is_and_escapes_the_rest() {
        assert_eq!(show_bytes(b"order:1", false), "order:1");
        assert_eq!(show_bytes("grüße".as_bytes(), false), "grüße");
        assert_eq!(show_bytes(b"a\\b", false), "a\\\\b");
        assert_eq!(show_bytes(b"a\x00\xffb\n", false), "a\\x00\\xffb\\n");
        assert_eq!(show_bytes(b"ab", true), "0x6162");
        assert_eq!(quoted(b"\x00k"), "\"\\x00k\"");
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        assert_eq!(from_hex("00ffA1").unwrap(), vec![0, 255, 161]);
        assert_eq!(from_hex("0x00ff").unwrap(), vec![0, 255]);
        assert_eq!(from_hex("0X").unwrap(), Vec::<u8>::new());
        assert_eq!(to_hex(&[0, 255, 161]), "00ffa1");
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
        assert!(from_hex("é1").is_err());
    }

    #[test]
    fn json_bytes_round_trip() {
        let mut obj = Map::new();
        put_bytes(&mut obj, "key", b"k1");
        put_bytes(&mut obj, "value", b"\xff\x00");
        assert_eq!(obj["key"], "k1");
        assert_eq!(obj["key_hex"], "6b31");
        assert_eq!(obj["value"], "\\xff\\x00");
        assert_eq!(obj["value_hex"], "ff00");
        assert_eq!(get_bytes(&obj, "key").unwrap(), Some(Some(b"k1".to_vec())));
        assert_eq!(
            get_bytes(&obj, "value").unwrap(),
            Some(Some(vec![0xff, 0x00]))
        );
        put_null(&mut obj, "gone");
        assert_eq!(get_bytes(&obj, "gone").unwrap(), Some(None));
        assert_eq!(get_bytes(&obj, "absent").unwrap(), None);
        obj.insert("raw".into(), Value::from("a\\b"));
        assert_eq!(
            get_bytes(&obj, "raw").unwrap(),
            Some(Some(b"a\\b".to_vec()))
        );
    }

    #[test]
    fn sizes_from_arguments() {
        assert_eq!(parse_size("1048576", "--x").unwrap(), 1 << 20);
        assert_eq!(parse_size("64K", "--x").unwrap(), 64 << 10);
        assert_eq!(parse_size("24m", "--x").unwrap(), 24 << 20);
        assert_eq!(parse_size("1G", "--x").unwrap(), 1 << 30);
        for bad in ["", "M", "0", "0K", "1.5M", "-1", "+1", "12T", "1 M", "1MiB"] {
            let err = parse_size(bad, "--x").unwrap_err();
            assert!(matches!(err, ToolError::Invalid(_)), "{bad:?}: {err}");
        }
        assert!(parse_size("99999999999999999999", "--x").is_err());
        assert!(parse_size(&format!("{}G", usize::MAX), "--x").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
