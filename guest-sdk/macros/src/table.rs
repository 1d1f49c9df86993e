//! `#[derive(Table)]`: a struct's schema (fields, key, indexes) and its key accessor.

use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericArgument, Meta, PathArguments, Type};

pub(crate) fn expand(item: TokenStream2) -> syn::Result<TokenStream2> {
    let input: DeriveInput = syn::parse2(item)?;
    let ident = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.span(),
            "a table is a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            input.span(),
            "a table is a struct with named fields",
        ));
    };
    let mut name = snake_case(&ident.to_string());
    for attr in &input.attrs {
        if attr.path().is_ident("table") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit: syn::LitStr = meta.value()?.parse()?;
                    name = lit.value();
                    Ok(())
                } else {
                    Err(meta.error("unknown argument: the only one is `name = \"...\"`"))
                }
            })?;
        }
    }
    check_ident(&name, input.span(), "table name")?;
    let all_default = input.attrs.iter().any(serde_default);
    let mut key: Option<(syn::Ident, &'static str)> = None;
    let mut schemas = Vec::new();
    // `#[rank]` / `#[rank(by = "field")]`: (score field, its `by`).
    let mut rank: Option<(String, Option<String>)> = None;
    for field in &fields.named {
        let Some(fident) = &field.ident else { continue };
        let fname = fident.to_string();
        check_ident(&fname, fident.span(), "field name")?;
        let (ty, nullable) = field_type(&field.ty);
        let defaulted = all_default || field.attrs.iter().any(serde_default);
        let indexed = field.attrs.iter().any(|a| a.path().is_ident("index"));
        if indexed && matches!(ty, "Value" | "Bytes") {
            return Err(syn::Error::new(
                field.span(),
                "only integer, float, bool and String fields can be indexed",
            ));
        }
        if let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("rank")) {
            if rank.is_some() {
                return Err(syn::Error::new(
                    attr.span(),
                    "a table has one #[rank] field",
                ));
            }
            if ty != "Int" {
                return Err(syn::Error::new(
                    field.ty.span(),
                    "a #[rank] field is an integer (or an Option of one: None is not ranked)",
                ));
            }
            let mut by = None;
            if matches!(attr.meta, Meta::List(_)) {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("by") {
                        let lit: syn::LitStr = meta.value()?.parse()?;
                        by = Some(lit.value());
                        Ok(())
                    } else {
                        Err(meta.error("unknown argument: the only one is `by = \"field\"`"))
                    }
                })?;
            }
            rank = Some((fname.clone(), by));
        }
        if field.attrs.iter().any(|a| a.path().is_ident("primary_key")) {
            if key.is_some() {
                return Err(syn::Error::new(
                    field.span(),
                    "a table has one #[primary_key]",
                ));
            }
            if nullable || !matches!(ty, "Int" | "Text") {
                return Err(syn::Error::new(
                    field.ty.span(),
                    "the primary key is an integer or a String (not an Option)",
                ));
            }
            key = Some((fident.clone(), ty));
        }
        let ty_ident = syn::Ident::new(ty, field.span());
        schemas.push(quote! {
            ::firefly_sdk::data::FieldSchema {
                name: ::std::string::String::from(#fname),
                ty: ::firefly_sdk::data::FieldType::#ty_ident,
                nullable: #nullable,
                defaulted: #defaulted,
                indexed: #indexed,
            }
        });
    }
    let Some((key_ident, _)) = key else {
        return Err(syn::Error::new(
            input.span(),
            "mark the primary key field with #[primary_key]",
        ));
    };
    let key_name = key_ident.to_string();
    let rank = match rank {
        None => quote! { ::std::option::Option::None },
        Some((field, by)) => {
            let by = match by {
                None => quote! { ::std::option::Option::None },
                Some(by) => {
                    quote! { ::std::option::Option::Some(::std::string::String::from(#by)) }
                }
            };
            quote! {
                ::std::option::Option::Some(::firefly_sdk::data::RankSchema {
                    field: ::std::string::String::from(#field),
                    by: #by,
                })
            }
        }
    };
    Ok(quote! {
        impl ::firefly_sdk::data::Table for #ident {
            const NAME: &'static str = #name;
            fn schema() -> ::firefly_sdk::data::TableSchema {
                ::firefly_sdk::data::TableSchema {
                    name: ::std::string::String::from(#name),
                    key: ::std::string::String::from(#key_name),
                    fields: ::std::vec![#(#schemas),*],
                    rank: #rank,
                }
            }
            fn key(&self) -> ::firefly_sdk::data::Key {
                ::firefly_sdk::data::key_of(&self.#key_ident)
            }
        }
    })
}

/// `#[serde(default)]` or `#[serde(default = "...")]`.
fn serde_default(attr: &syn::Attribute) -> bool {
    if !attr.path().is_ident("serde") {
        return false;
    }
    let Meta::List(list) = &attr.meta else {
        return false;
    };
    list.tokens
        .to_token_stream()
        .into_iter()
        .any(|t| t.to_string() == "default")
}

/// The stored type of a Rust type (judged by its name), and whether it is an `Option`.
fn field_type(ty: &Type) -> (&'static str, bool) {
    if let Some(inner) = generic_arg(ty, "Option") {
        return (field_type(inner).0, true);
    }
    if let Some(inner) = generic_arg(ty, "Vec")
        && last_ident(inner).as_deref() == Some("u8")
    {
        return ("Bytes", false);
    }
    let kind = match last_ident(ty).as_deref() {
        Some("i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "isize" | "usize") => {
            "Int"
        }
        Some("f32" | "f64") => "Float",
        Some("bool") => "Bool",
        Some("String") => "Text",
        Some("ByteBuf") => "Bytes",
        _ => "Value",
    };
    (kind, false)
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn generic_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn check_ident(name: &str, span: proc_macro2::Span, what: &str) -> syn::Result<()> {
    let ok = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            span,
            format!(
                "`{name}` is not a valid {what}: lowercase letters, digits and `_`, starting with a letter, at most 48 characters"
            ),
        ))
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
