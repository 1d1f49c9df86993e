//! Typed clients generated from a module (`firefly client-gen`).
//!
//! A Rust module built with the guest SDK carries its description in the custom section
//! `firefly.schema` of its `.wasm` (written by `#[firefly_sdk::module]` from the types its
//! handlers and `#[push(..)]` topic constants name; see `firefly_sdk::schema`). This reads it
//! ([`read_schema`]) and writes a client for it in TypeScript ([`typescript`]), Python
//! ([`python`]) or C# ([`csharp`]): one method per command, named after its handler, taking and
//! returning the declared types, and one subscription per push topic.

pub mod csharp;
mod names;
pub mod python;
mod schema;
pub mod typescript;

pub use names::{camel, command_doc, doc_lines, pascal, snake, words};
pub use schema::{
    Command, EnumDef, Field, Kind, ModuleSchema, Named, Push, Repr, SECTION, StructDef, Ty,
    Variant, custom_section, named_types, read_schema,
};

/// The target languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// TypeScript, for `@firefly-rs/client`.
    Ts,
    /// Python, for `firefly_client`.
    Py,
    /// C#, for the `Firefly.Client` library.
    Cs,
}

/// Writes the client for `schema` in `lang`.
pub fn generate(schema: &ModuleSchema, lang: Lang) -> String {
    match lang {
        Lang::Ts => typescript::generate(schema),
        Lang::Py => python::generate(schema),
        Lang::Cs => csharp::generate(schema),
    }
}

#[cfg(test)]
mod tests;
