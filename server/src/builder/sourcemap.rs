//! Just enough of source maps (v3) to turn a position in a TypeScript module's bundle back into
//! the file and line the author wrote, for load errors.

use std::path::Path;

/// A decoded source map: for each generated line, its segments `(column, source, line)`.
pub struct SourceMap {
    sources: Vec<String>,
    lines: Vec<Vec<(u32, u32, u32)>>,
}

impl SourceMap {
    /// The inline map (`//# sourceMappingURL=data:...;base64,`) at the end of `bundle`.
    pub fn from_bundle(bundle: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(bundle).ok()?;
        let encoded = text.rsplit_once(";base64,")?.1.trim();
        let json: serde_json::Value = serde_json::from_slice(&base64(encoded)?).ok()?;
        let sources = json["sources"]
            .as_array()?
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect();
        Some(Self {
            sources,
            lines: mappings(json["mappings"].as_str()?)?,
        })
    }

    /// The source file and 1-based line of generated `line` (1-based) and `column` (1-based).
    pub fn original(&self, line: u32, column: u32) -> Option<(&str, u32)> {
        let segments = self.lines.get(line.checked_sub(1)? as usize)?;
        let column = column.saturating_sub(1);
        let segment = segments
            .iter()
            .rev()
            .find(|(c, _, _)| *c <= column)
            .or_else(|| segments.first())?;
        let source = self.sources.get(segment.1 as usize)?;
        Some((source, segment.2 + 1))
    }
}

/// Replaces each `module.js:LINE[:COL]` in `message` with `FILE:LINE` of the original source
/// (paths relative to the module folder `dir`, as esbuild writes them).
pub fn rewrite(message: &str, map: &SourceMap, dir: &Path) -> String {
    const NEEDLE: &str = "module.js:";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(NEEDLE) {
        out.push_str(&rest[..at]);
        let after = &rest[at + NEEDLE.len()..];
        let digits = |s: &str| s.chars().take_while(char::is_ascii_digit).count();
        let line_len = digits(after);
        let line: u32 = after[..line_len].parse().unwrap_or(0);
        let mut consumed = line_len;
        let mut column = 1;
        if after[line_len..].starts_with(':') {
            let col_len = digits(&after[line_len + 1..]);
            if col_len > 0 {
                column = after[line_len + 1..line_len + 1 + col_len]
                    .parse()
                    .unwrap_or(1);
                consumed += 1 + col_len;
            }
        }
        match map.original(line, column) {
            Some((source, original)) => {
                let path = dir.join(source);
                let shown = path
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.strip_prefix(dir).ok().map(|p| p.display().to_string()))
                    .unwrap_or_else(|| source.to_owned());
                out.push_str(&format!("{shown}:{original}"));
            }
            None => out.push_str(&rest[at..at + NEEDLE.len() + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// The value of one base64 digit.
fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let v = sextet(c)?;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes the `mappings` field: base64 VLQ, `;` between generated lines, `,` between
/// segments, fields relative to the previous segment (the column only within a line).
fn mappings(text: &str) -> Option<Vec<Vec<(u32, u32, u32)>>> {
    let mut lines = Vec::new();
    let (mut source, mut line) = (0i64, 0i64);
    for generated in text.split(';') {
        let mut segments = Vec::new();
        let mut column = 0i64;
        for segment in generated.split(',').filter(|s| !s.is_empty()) {
            let fields = vlq(segment)?;
            column += *fields.first()?;
            if fields.len() >= 4 {
                source += fields[1];
                line += fields[2];
                segments.push((column as u32, source as u32, line as u32));
            }
        }
        lines.push(segments);
    }
    Some(lines)
}

fn vlq(segment: &str) -> Option<Vec<i64>> {
    let mut values = Vec::new();
    let (mut value, mut shift) = (0i64, 0u32);
    for c in segment.bytes() {
        let digit = i64::from(sextet(c)?);
        value += (digit & 31) << shift;
        if digit & 32 != 0 {
            shift += 5;
        } else {
            let negative = value & 1 == 1;
            value >>= 1;
            values.push(if negative { -value } else { value });
            value = 0;
            shift = 0;
        }
    }
    Some(values)
}
