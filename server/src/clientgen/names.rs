//! Names and doc comments as each language spells them.

use super::schema::Command;

/// `snake_case` words of a name (`channel_message`, `ChannelMessage`, `chat-v2`).
pub fn words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            words.push(String::new());
            prev_lower = false;
            continue;
        }
        if words.is_empty() || (c.is_uppercase() && prev_lower) {
            words.push(String::new());
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        if let Some(w) = words.last_mut() {
            w.extend(c.to_lowercase());
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// `ChannelMessage` from any spelling.
pub fn pascal(name: &str) -> String {
    words(name)
        .iter()
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// `channelMessage` from any spelling.
pub fn camel(name: &str) -> String {
    let p = pascal(name);
    let mut c = p.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// `channel_message` from any spelling.
pub fn snake(name: &str) -> String {
    words(name).join("_")
}

/// A command's documentation: its handler's doc comment, and its id unless that names it.
pub fn command_doc(c: &Command) -> Vec<String> {
    let mut doc = doc_lines(&c.doc);
    if !c.doc.contains(&c.id.to_string()) {
        doc.insert(0, format!("Command {}.", c.id));
    }
    doc
}

/// A doc comment's lines.
pub fn doc_lines(doc: &str) -> Vec<String> {
    if doc.trim().is_empty() {
        Vec::new()
    } else {
        doc.lines().map(str::to_owned).collect()
    }
}
