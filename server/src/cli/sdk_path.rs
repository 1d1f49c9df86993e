//! Where the guest SDK is, and paths relative to a new module: what `firefly new` writes into
//! a Rust crate's `Cargo.toml` and a TypeScript module's `tsconfig.json`.

use std::path::{Component, Path, PathBuf};

/// The guest SDK directory: `guest-sdk/` in the current directory or an ancestor, or next to
/// the `firefly` binary's source tree.
pub(super) fn find_sdk() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("guest-sdk");
        if candidate.join("Cargo.toml").exists() {
            return candidate.canonicalize().ok();
        }
        if !dir.pop() {
            break;
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    built_from.canonicalize().ok()
}

/// `to` relative to `from` (both absolute).
pub(super) fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}
