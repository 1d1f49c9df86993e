//! `#[derive(Schema)]`: a type's wire shape as a constant, read from the type and its
//! `#[serde(...)]` attributes (what a typed client needs: names as serde writes them, which
//! fields may be absent, how enum variants are tagged).

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr};

/// What the `#[serde]` and `#[schema]` attributes of a type, field or variant say.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    rename_all_fields: Option<String>,
    tag: Option<String>,
    content: Option<String>,
    untagged: bool,
    transparent: bool,
    default: bool,
    skip: bool,
    maybe_absent: bool,
    flatten: bool,
    with: Option<String>,
    any: bool,
}

fn serde_attrs(attrs: &[Attribute]) -> syn::Result<Serde> {
    let mut s = Serde::default();
    for attr in attrs {
        if attr.path().is_ident("schema") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("any") {
                    s.any = true;
                    Ok(())
                } else {
                    Err(meta.error("unknown argument: the only one is `any`"))
                }
            })?;
            continue;
        }
        if !attr.path().is_ident("serde") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let value = if meta.input.peek(syn::Token![=]) {
                let v = meta.value()?;
                if v.peek(LitStr) {
                    Some(v.parse::<LitStr>()?.value())
                } else {
                    v.parse::<syn::Expr>()?;
                    None
                }
            } else if meta.input.peek(syn::token::Paren) {
                // `rename(serialize = "..")` and friends: not read (names differ by direction).
                let _content;
                syn::parenthesized!(_content in meta.input);
                let _: TokenStream2 = _content.parse()?;
                None
            } else {
                None
            };
            match key.as_str() {
                "rename" => s.rename = value,
                "rename_all" => s.rename_all = value,
                "rename_all_fields" => s.rename_all_fields = value,
                "tag" => s.tag = value,
                "content" => s.content = value,
                "untagged" => s.untagged = true,
                "transparent" => s.transparent = true,
                "default" => s.default = true,
                "skip" => s.skip = true,
                "skip_serializing" | "skip_deserializing" | "skip_serializing_if" => {
                    s.maybe_absent = true
                }
                "flatten" => s.flatten = true,
                "with" | "serialize_with" | "deserialize_with" => {
                    s.with = Some(value.unwrap_or_default())
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(s)
}

/// The doc comment of an item, one string.
pub(crate) fn doc(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_owned())
        .collect();
    lines.join("\n").trim().to_owned()
}

/// `name` (a field's snake_case or a variant's PascalCase) in serde's `rename_all` style.
fn rename(name: &str, rule: Option<&str>, variant: bool) -> syn::Result<String> {
    let Some(rule) = rule else {
        return Ok(name.to_owned());
    };
    let words: Vec<String> = if variant {
        let mut words: Vec<String> = Vec::new();
        for c in name.chars() {
            if c.is_uppercase() || words.is_empty() {
                words.push(String::new());
            }
            if let Some(w) = words.last_mut() {
                w.extend(c.to_lowercase());
            }
        }
        words
    } else {
        name.split('_').map(str::to_lowercase).collect()
    };
    let cap = |w: &String| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    Ok(match rule {
        "lowercase" => words.concat(),
        "UPPERCASE" => words.concat().to_uppercase(),
        "PascalCase" => words.iter().map(cap).collect(),
        "camelCase" => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.clone() } else { cap(w) })
            .collect(),
        "snake_case" => words.join("_"),
        "SCREAMING_SNAKE_CASE" => words.join("_").to_uppercase(),
        "kebab-case" => words.join("-"),
        "SCREAMING-KEBAB-CASE" => words.join("-").to_uppercase(),
        other => {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("unknown rename_all rule `{other}`"),
            ));
        }
    })
}

fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").unwrap_or(&s).to_owned()
}

pub(crate) fn expand(item: TokenStream2) -> syn::Result<TokenStream2> {
    let input: DeriveInput = syn::parse2(item)?;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Schema)] takes types without generic parameters (a typed client names each type once)",
        ));
    }
    let ident = &input.ident;
    let top = serde_attrs(&input.attrs)?;
    let name = top.rename.clone().unwrap_or_else(|| unraw(ident));
    let type_doc = doc(&input.attrs);
    let body = match &input.data {
        Data::Struct(data) => {
            if top.transparent || matches!(&data.fields, Fields::Unnamed(f) if f.unnamed.len() == 1)
            {
                let inner = data
                    .fields
                    .iter()
                    .find(|f| serde_attrs(&f.attrs).map(|s| !s.skip).unwrap_or(true));
                match inner {
                    Some(f) => field_type(f)?,
                    None => quote! { &::firefly_sdk::schema::Type::Unit },
                }
            } else {
                match &data.fields {
                    Fields::Named(_) => {
                        let fields = named_fields(&data.fields, &top, top.rename_all.as_deref())?;
                        quote! {
                            &::firefly_sdk::schema::Type::Struct { name: #name, doc: #type_doc, fields: &[#(#fields),*] }
                        }
                    }
                    Fields::Unnamed(_) => {
                        let items = tuple_items(&data.fields)?;
                        quote! { &::firefly_sdk::schema::Type::Tuple { items: &[#(#items),*] } }
                    }
                    Fields::Unit => quote! { &::firefly_sdk::schema::Type::Unit },
                }
            }
        }
        Data::Enum(data) => {
            let repr = match (&top.tag, &top.content, top.untagged) {
                (_, _, true) => quote! { ::firefly_sdk::schema::EnumRepr::Untagged },
                (Some(tag), Some(content), _) => {
                    quote! { ::firefly_sdk::schema::EnumRepr::Adjacent { tag: #tag, content: #content } }
                }
                (Some(tag), None, _) => {
                    quote! { ::firefly_sdk::schema::EnumRepr::Internal { tag: #tag } }
                }
                (None, _, false) => quote! { ::firefly_sdk::schema::EnumRepr::External },
            };
            let mut variants = Vec::new();
            for v in &data.variants {
                let attrs = serde_attrs(&v.attrs)?;
                if attrs.skip {
                    continue;
                }
                let vname = match attrs.rename {
                    Some(n) => n,
                    None => rename(&unraw(&v.ident), top.rename_all.as_deref(), true)?,
                };
                let vdoc = doc(&v.attrs);
                let kind = match &v.fields {
                    Fields::Unit => quote! { ::firefly_sdk::schema::VariantKind::Unit },
                    Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                        let of = f.unnamed.first().map(field_type).transpose()?;
                        quote! { ::firefly_sdk::schema::VariantKind::Newtype { of: #of } }
                    }
                    Fields::Unnamed(_) => {
                        let items = tuple_items(&v.fields)?;
                        quote! { ::firefly_sdk::schema::VariantKind::Tuple { items: &[#(#items),*] } }
                    }
                    Fields::Named(_) => {
                        let rule = attrs
                            .rename_all
                            .as_deref()
                            .or(top.rename_all_fields.as_deref());
                        let fields = named_fields(&v.fields, &Serde::default(), rule)?;
                        quote! { ::firefly_sdk::schema::VariantKind::Struct { fields: &[#(#fields),*] } }
                    }
                };
                variants.push(quote! {
                    ::firefly_sdk::schema::Variant { name: #vname, doc: #vdoc, kind: #kind }
                });
            }
            quote! {
                &::firefly_sdk::schema::Type::Enum { name: #name, doc: #type_doc, repr: #repr, variants: &[#(#variants),*] }
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span(),
                "#[derive(Schema)] is for structs and enums",
            ));
        }
    };
    Ok(quote! {
        impl ::firefly_sdk::schema::Schema for #ident {
            const TYPE: &'static ::firefly_sdk::schema::Type = #body;
        }
    })
}

/// A field's type description: its type's, unless an attribute says otherwise.
fn field_type(field: &syn::Field) -> syn::Result<TokenStream2> {
    let attrs = serde_attrs(&field.attrs)?;
    if attrs.any {
        return Ok(quote! { &::firefly_sdk::schema::Type::Any });
    }
    match attrs.with.as_deref() {
        Some("serde_bytes") => Ok(quote! { &::firefly_sdk::schema::Type::Bytes }),
        Some(_) => Ok(quote! { &::firefly_sdk::schema::Type::Any }),
        None => {
            let ty = &field.ty;
            Ok(quote! { <#ty as ::firefly_sdk::schema::Schema>::TYPE })
        }
    }
}

fn tuple_items(fields: &Fields) -> syn::Result<Vec<TokenStream2>> {
    fields.iter().map(field_type).collect()
}

fn named_fields(
    fields: &Fields,
    top: &Serde,
    rule: Option<&str>,
) -> syn::Result<Vec<TokenStream2>> {
    let mut out = Vec::new();
    for field in fields {
        let attrs = serde_attrs(&field.attrs)?;
        if attrs.skip {
            continue;
        }
        if attrs.flatten {
            return Err(syn::Error::new(
                field.span(),
                "#[derive(Schema)] does not describe `#[serde(flatten)]` fields",
            ));
        }
        let Some(ident) = &field.ident else { continue };
        let fname = match attrs.rename.clone() {
            Some(n) => n,
            None => rename(&unraw(ident), rule, false)?,
        };
        let fdoc = doc(&field.attrs);
        let optional = top.default || attrs.default || attrs.maybe_absent || is_option(&field.ty);
        let ty = field_type(field)?;
        out.push(quote! {
            ::firefly_sdk::schema::Field { name: #fname, doc: #fdoc, ty: #ty, optional: #optional }
        });
    }
    Ok(out)
}

/// Whether `ty` is spelled `Option<..>` (serde lets such a field be absent from a request).
fn is_option(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        _ => false,
    }
}
