//! The module's description for typed clients: each handler's request and reply types, the push
//! topics declared with `#[push(Payload)]`, written into the custom section `firefly.schema`
//! (see `firefly_sdk::schema`).

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, Item, ItemFn, PathArguments, ReturnType, Type};

use crate::schema::doc;

/// What a handler takes and answers, as written in its signature.
pub(crate) struct Signature {
    pub(crate) name: String,
    pub(crate) doc: String,
    pub(crate) request: Option<Type>,
    pub(crate) reply: Option<Type>,
}

/// `fn name(ctx, req: Req) -> Result<Resp>`: `Req` and `Resp` (the first type argument of the
/// return type, which is `Result<Resp>` in some spelling).
pub(crate) fn signature(func: &ItemFn, doc: &str) -> Signature {
    let request = match func.sig.inputs.iter().nth(1) {
        Some(FnArg::Typed(pat)) => Some((*pat.ty).clone()),
        _ => None,
    };
    let reply = match &func.sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().and_then(|s| match &s.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                    GenericArgument::Type(t) => Some(t.clone()),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        },
        ReturnType::Default => None,
    };
    Signature {
        name: func.sig.ident.to_string(),
        doc: doc.to_owned(),
        request,
        reply,
    }
}

/// A push topic: `#[push(Payload)]` (or `#[push(Payload, name = "x")]`) on a `u32` constant.
pub(crate) struct Push {
    constant: Ident,
    name: String,
    doc: String,
    payload: Type,
}

/// Takes `#[push(..)]` off the module's constants, recording what they declare.
pub(crate) fn pushes(items: &mut [Item]) -> syn::Result<Vec<Push>> {
    let mut out: Vec<Push> = Vec::new();
    for item in items.iter_mut() {
        let Item::Const(c) = item else { continue };
        let Some(at) = c.attrs.iter().position(|a| a.path().is_ident("push")) else {
            continue;
        };
        let attr = c.attrs.remove(at);
        let (payload, name) = attr.parse_args_with(|input: syn::parse::ParseStream| {
            let payload: Type = input.parse()?;
            let mut name = None;
            if input.parse::<Option<syn::Token![,]>>()?.is_some() && !input.is_empty() {
                let key: Ident = input.parse()?;
                if key != "name" {
                    return Err(syn::Error::new(key.span(), "the only argument is `name = \"...\"`"));
                }
                input.parse::<syn::Token![=]>()?;
                name = Some(input.parse::<syn::LitStr>()?.value());
            }
            Ok((payload, name))
        }).map_err(|e| syn::Error::new(e.span(), format!("{e}: a push topic is declared as `#[push(Payload)]` or `#[push(Payload, name = \"name\")]` on its `u32` constant")))?;
        let name = name.unwrap_or_else(|| {
            let lower = c.ident.to_string().to_lowercase();
            let trimmed = lower.strip_prefix("topic_").unwrap_or(&lower);
            trimmed.strip_suffix("_topic").unwrap_or(trimmed).to_owned()
        });
        if let Some(prev) = out.iter().find(|p| p.name == name) {
            return Err(syn::Error::new(
                attr.span(),
                format!("push `{name}` is already declared by `{}`", prev.constant),
            ));
        }
        out.push(Push {
            constant: c.ident.clone(),
            name,
            doc: doc(&c.attrs),
            payload,
        });
    }
    Ok(out)
}

/// The description as a constant, and the custom section holding it as JSON.
pub(crate) fn generate(
    name: &TokenStream2,
    handlers: &[(u32, Signature)],
    pushes: &[Push],
) -> Vec<Item> {
    let of = |ty: &Option<Type>| match ty {
        Some(t) => quote! { ::firefly_sdk::schema::SchemaOf::<#t>::TYPE },
        None => quote! { &::firefly_sdk::schema::Type::Any },
    };
    let commands = handlers.iter().map(|(id, s)| {
        let (fname, doc) = (&s.name, &s.doc);
        let (request, reply) = (of(&s.request), of(&s.reply));
        quote! {
            ::firefly_sdk::schema::Command { id: #id, name: #fname, doc: #doc, request: #request, reply: #reply }
        }
    });
    let pushes = pushes.iter().map(|p| {
        let (constant, pname, doc) = (&p.constant, &p.name, &p.doc);
        let payload = of(&Some(p.payload.clone()));
        quote! {
            ::firefly_sdk::schema::Push { topic: #constant, name: #pname, doc: #doc, payload: #payload }
        }
    });
    vec![
        syn::parse_quote! {
            #[allow(unused_imports)]
            use ::firefly_sdk::schema::Fallback as _;
        },
        syn::parse_quote! {
            /// This module's description for typed clients (generated by `#[firefly_sdk::module]`).
            #[doc(hidden)]
            const __FIREFLY_SCHEMA: ::firefly_sdk::schema::Module = ::firefly_sdk::schema::Module {
                name: #name,
                commands: &[#(#commands),*],
                pushes: &[#(#pushes),*],
            };
        },
        syn::parse_quote! {
            #[doc(hidden)]
            const __FIREFLY_SCHEMA_LEN: usize = ::firefly_sdk::schema::json_len(&__FIREFLY_SCHEMA);
        },
        // The section's name is `firefly_abi::SCHEMA_SECTION`, spelled out: `link_section`
        // takes a literal (the typed-client tests read it back through the host's constant).
        syn::parse_quote! {
            /// The description as JSON, in the `.wasm`'s custom section `firefly.schema`.
            #[doc(hidden)]
            #[used]
            #[cfg_attr(target_family = "wasm", unsafe(link_section = "firefly.schema"))]
            static __FIREFLY_SCHEMA_JSON: [u8; __FIREFLY_SCHEMA_LEN] =
                ::firefly_sdk::schema::write_json::<__FIREFLY_SCHEMA_LEN>(&__FIREFLY_SCHEMA);
        },
    ]
}
