//! Procedural macros of the Firefly guest SDK. Use them through `firefly_sdk`:
//! `#[firefly_sdk::module]` on an inline module, `#[handler(N)]`, `#[timer("tag")]`,
//! `#[room_tick]`, `#[room_event]`, `#[on_connect]` and `#[on_disconnect]` on functions inside it.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Item, ItemFn, Lit, LitInt, Meta, Token};

/// Turns an inline module into a Firefly module.
///
/// Scans the module for functions marked `#[handler(N)]` (a client command, `fn(&mut Ctx,
/// Req) -> Result<Resp>`), `#[timer("tag")]` (a timer firing, `fn(&mut Ctx, Fired<T>) ->
/// Result<()>`), `#[room_tick]` (a room's tick, `fn(&mut Ctx, Tick<S>) -> Result<Option<S>>`),
/// `#[room_event]` (a member joined, left or was disconnected, `fn(&mut Ctx, RoomEvent) ->
/// Result<()>`),
/// `#[on_connect]` and `#[on_disconnect]` (`fn(&mut Ctx) -> Result<()>`), and generates the module's exports: the manifest (`__firefly_describe`), the
/// dispatcher (`__firefly_dispatch`) and the batch dispatcher (`__firefly_dispatch_batch`). `#[firefly_sdk::module(name = "x")]` overrides
/// the module name, which defaults to the crate name.
///
/// It also writes the module's description for typed clients into the `.wasm` (custom section
/// `firefly.schema`): each handler's name, request and reply type, and the push topics declared
/// with `#[push(Payload)]` (or `#[push(Payload, name = "x")]`) on a `u32` topic constant.
#[proc_macro_attribute]
pub fn module(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

struct Handler {
    id: u32,
    ident: Ident,
    signature: section::Signature,
}

struct TimerHandler {
    tag: String,
    ident: Ident,
}

/// What a module's functions declare.
#[derive(Default)]
struct Declared {
    handlers: Vec<Handler>,
    timers: Vec<TimerHandler>,
    on_connect: Option<Ident>,
    on_disconnect: Option<Ident>,
    room_tick: Option<Ident>,
    room_event: Option<Ident>,
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let name = module_name(attr)?;
    let mut module = match syn::parse2::<Item>(item)? {
        Item::Mod(module) => module,
        other => {
            return Err(syn::Error::new(
                other.span(),
                "#[firefly_sdk::module] needs an inline module: `mod game { ... }`",
            ));
        }
    };
    let Some((_, items)) = module.content.as_mut() else {
        return Err(syn::Error::new(
            module.span(),
            "#[firefly_sdk::module] needs an inline module: `mod game { ... }`",
        ));
    };
    let tables = table_structs(items);
    let pushes = section::pushes(items)?;
    let mut declared = Declared::default();
    for item in items.iter_mut() {
        match item {
            Item::Fn(func) => scan(func, &mut declared)?,
            other => misplaced(other)?,
        }
    }
    let d = &declared;
    if d.handlers.is_empty()
        && d.timers.is_empty()
        && d.on_connect.is_none()
        && d.on_disconnect.is_none()
        && d.room_tick.is_none()
        && d.room_event.is_none()
        && tables.is_empty()
    {
        return Err(syn::Error::new(
            module.ident.span(),
            "this module has no `#[handler(N)]`, `#[timer(\"tag\")]`, `#[on_connect]` or `#[on_disconnect]` function",
        ));
    }
    declared.handlers.sort_by_key(|h| h.id);
    declared.timers.sort_by(|a, b| a.tag.cmp(&b.tag));
    let name = match name {
        Some(n) => quote! { #n },
        None => quote! { ::core::env!("CARGO_PKG_NAME") },
    };
    items.extend(generate(&declared, &tables, &name));
    let signatures: Vec<(u32, section::Signature)> = declared
        .handlers
        .into_iter()
        .map(|h| (h.id, h.signature))
        .collect();
    items.extend(section::generate(&name, &signatures, &pushes));
    Ok(quote! { #module })
}

/// Takes the Firefly attributes off `func`, recording what they declare.
fn scan(func: &mut ItemFn, declared: &mut Declared) -> syn::Result<()> {
    let mut kept = Vec::new();
    let doc = schema::doc(&func.attrs);
    for attr in std::mem::take(&mut func.attrs) {
        let path = attr.path();
        if path.is_ident("handler") {
            let id = handler_id(&attr)?;
            check_signature(func, 2, "a handler takes `(ctx: &mut Ctx, request: Req)`")?;
            if let Some(prev) = declared.handlers.iter().find(|h| h.id == id) {
                return Err(syn::Error::new(
                    attr.span(),
                    format!("command {id} is already handled by `{}`", prev.ident),
                ));
            }
            declared.handlers.push(Handler {
                id,
                ident: func.sig.ident.clone(),
                signature: section::signature(func, &doc),
            });
        } else if path.is_ident("timer") {
            let tag = timer_tag(&attr)?;
            check_signature(
                func,
                2,
                "a timer handler takes `(ctx: &mut Ctx, fired: Fired<T>)`",
            )?;
            if let Some(prev) = declared.timers.iter().find(|t| t.tag == tag) {
                return Err(syn::Error::new(
                    attr.span(),
                    format!("timer `{tag}` is already handled by `{}`", prev.ident),
                ));
            }
            declared.timers.push(TimerHandler {
                tag,
                ident: func.sig.ident.clone(),
            });
        } else if path.is_ident("room_tick") {
            check_signature(
                func,
                2,
                "a room tick handler takes `(ctx: &mut Ctx, tick: Tick<State>)`",
            )?;
            if declared.room_tick.is_some() {
                return Err(syn::Error::new(
                    attr.span(),
                    "only one `#[room_tick]` function per module",
                ));
            }
            declared.room_tick = Some(func.sig.ident.clone());
        } else if path.is_ident("room_event") {
            check_signature(
                func,
                2,
                "a room event handler takes `(ctx: &mut Ctx, event: RoomEvent)`",
            )?;
            if declared.room_event.is_some() {
                return Err(syn::Error::new(
                    attr.span(),
                    "only one `#[room_event]` function per module",
                ));
            }
            declared.room_event = Some(func.sig.ident.clone());
        } else if path.is_ident("on_connect") || path.is_ident("on_disconnect") {
            check_signature(func, 1, "a session event handler takes `(ctx: &mut Ctx)`")?;
            let slot = if path.is_ident("on_connect") {
                &mut declared.on_connect
            } else {
                &mut declared.on_disconnect
            };
            if slot.is_some() {
                return Err(syn::Error::new(
                    attr.span(),
                    "only one function per session event",
                ));
            }
            *slot = Some(func.sig.ident.clone());
        } else {
            kept.push(attr);
        }
    }
    func.attrs = kept;
    Ok(())
}

/// The attributes [`scan`] reads off the module's functions.
const ENTRY_ATTRS: [&str; 6] = [
    "handler",
    "timer",
    "room_tick",
    "room_event",
    "on_connect",
    "on_disconnect",
];

/// An entry attribute anywhere but on a function of the module itself (on a method, on an item
/// of a nested module, on a struct) is refused here: left in place, rustc would only say it
/// knows no attribute `handler`, and the function would never be called.
fn misplaced(item: &Item) -> syn::Result<()> {
    let mut attrs: Vec<&syn::Attribute> = Vec::new();
    match item {
        Item::Impl(i) => {
            for inner in &i.items {
                if let syn::ImplItem::Fn(f) = inner {
                    attrs.extend(&f.attrs);
                }
            }
        }
        Item::Trait(t) => {
            for inner in &t.items {
                if let syn::TraitItem::Fn(f) = inner {
                    attrs.extend(&f.attrs);
                }
            }
        }
        Item::Mod(m) => {
            attrs.extend(&m.attrs);
            for inner in m.content.iter().flat_map(|(_, items)| items) {
                match inner {
                    Item::Fn(f) => attrs.extend(&f.attrs),
                    other => misplaced(other)?,
                }
            }
        }
        Item::Const(c) => attrs.extend(&c.attrs),
        Item::Static(c) => attrs.extend(&c.attrs),
        Item::Struct(c) => attrs.extend(&c.attrs),
        Item::Enum(c) => attrs.extend(&c.attrs),
        Item::Type(c) => attrs.extend(&c.attrs),
        Item::Use(c) => attrs.extend(&c.attrs),
        _ => {}
    }
    match attrs
        .into_iter()
        .find(|a| ENTRY_ATTRS.iter().any(|name| a.path().is_ident(name)))
    {
        Some(attr) => Err(syn::Error::new(
            attr.span(),
            format!(
                "`#[{}]` goes on a function of the `#[firefly_sdk::module]` module itself, not on a method, an item of a nested module or a type: nothing else is called",
                attr.path().to_token_stream()
            ),
        )),
        None => Ok(()),
    }
}

/// The module's exports: the manifest, the routers and the two dispatch entries.
fn generate(d: &Declared, tables: &[Ident], name: &TokenStream2) -> Vec<Item> {
    let ids: Vec<u32> = d.handlers.iter().map(|h| h.id).collect();
    let arms = d.handlers.iter().map(|h| {
        let (id, ident) = (h.id, &h.ident);
        quote! { #id => ::core::option::Option::Some(::firefly_sdk::__private::handle(ctx, input, #ident)), }
    });
    let tags: Vec<&str> = d.timers.iter().map(|t| t.tag.as_str()).collect();
    let timer_arms = d.timers.iter().enumerate().map(|(i, t)| {
        let (index, ident) = (i as u32, &t.ident);
        quote! { #index => ::core::option::Option::Some(::firefly_sdk::__private::handle_timer(ctx, input, #ident)), }
    });
    let event = |f: &Option<Ident>| match f {
        Some(ident) => {
            quote! { ::core::option::Option::Some(#ident as ::firefly_sdk::__private::EventFn) }
        }
        None => quote! { ::core::option::Option::None },
    };
    let (connect, disconnect) = (event(&d.on_connect), event(&d.on_disconnect));
    let mut events = Vec::new();
    if d.on_connect.is_some() {
        events.push("connect");
    }
    if d.on_disconnect.is_some() {
        events.push("disconnect");
    }
    if d.room_tick.is_some() {
        events.push("room_tick");
    }
    if d.room_event.is_some() {
        events.push("room_event");
    }
    let room_event = match &d.room_event {
        Some(ident) => quote! {
            ::core::option::Option::Some(#ident as ::firefly_sdk::__private::RoomEventFn)
        },
        None => quote! { ::core::option::Option::None },
    };
    let room_tick = match &d.room_tick {
        Some(ident) => quote! {
            ::core::option::Option::Some({
                fn entry(
                    ctx: &mut ::firefly_sdk::Ctx,
                    input: &[u8],
                ) -> ::firefly_sdk::Result<::std::vec::Vec<u8>> {
                    ::firefly_sdk::__private::handle_room_tick(ctx, input, #ident)
                }
                entry as ::firefly_sdk::__private::RoomTickFn
            })
        },
        None => quote! { ::core::option::Option::None },
    };
    vec![
        syn::parse_quote! {
            /// Writes this module's manifest (generated by `#[firefly_sdk::module]`).
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn __firefly_describe() {
                ::firefly_sdk::__private::describe_with_tables(
                    #name,
                    &[#(#ids),*],
                    &[#(#events),*],
                    &[#(<#tables as ::firefly_sdk::data::Table>::schema),*],
                    &[#(#tags),*],
                );
            }
        },
        syn::parse_quote! {
            /// Where this module's calls go (generated by `#[firefly_sdk::module]`).
            #[doc(hidden)]
            const __FIREFLY_ROUTES: ::firefly_sdk::__private::Routes = ::firefly_sdk::__private::Routes {
                requests: |ctx, id, input| match id {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                },
                on_connect: #connect,
                on_disconnect: #disconnect,
                timers: |ctx, id, input| match id {
                    #(#timer_arms)*
                    _ => ::core::option::Option::None,
                },
                room_tick: #room_tick,
                room_event: #room_event,
            };
        },
        syn::parse_quote! {
            /// Routes a call to its handler (generated by `#[firefly_sdk::module]`).
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn __firefly_dispatch(kind: u32, id: u32, session: u64, input_len: u32) -> u32 {
                ::firefly_sdk::__private::dispatch(kind, id, session, input_len, &__FIREFLY_ROUTES)
            }
        },
        syn::parse_quote! {
            /// Serves a batch of pipelined requests in one call (generated by
            /// `#[firefly_sdk::module]`).
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn __firefly_dispatch_batch(session: u64) -> u32 {
                ::firefly_sdk::__private::dispatch_batch(session, &__FIREFLY_ROUTES)
            }
        },
    ]
}

/// Structs of the module that derive `Table`, and aliases marked `#[table]` of tables defined
/// in another crate (`#[table] type Score = common::Score;`, the attribute is taken off):
/// their schemas go into the manifest.
fn table_structs(items: &mut [Item]) -> Vec<Ident> {
    items
        .iter_mut()
        .filter_map(|item| match item {
            Item::Struct(s)
                if s.attrs.iter().any(|a| {
                    a.path().is_ident("derive")
                        && a.meta.to_token_stream().to_string().contains("Table")
                }) =>
            {
                Some(s.ident.clone())
            }
            Item::Type(t) if t.attrs.iter().any(|a| a.path().is_ident("table")) => {
                t.attrs.retain(|a| !a.path().is_ident("table"));
                Some(t.ident.clone())
            }
            _ => None,
        })
        .collect()
}

mod schema;
mod section;
mod table;

/// Describes a type's wire shape for typed clients (`firefly_sdk::schema::Schema`), reading
/// its `#[serde(...)]` attributes. `#[schema(any)]` on a field describes it as any value (for
/// a field whose type does not describe itself, or a recursive one).
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(item: TokenStream) -> TokenStream {
    match schema::expand(item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Declares a struct as a table of cached database objects (see `firefly_sdk::data`).
///
/// `#[table(name = "players")]` names the table (default: the struct's name in snake case);
/// `#[primary_key]` marks the key field (an integer or `String`); `#[index]` marks fields whose
/// values can list keys. `Option<T>` fields are nullable and `#[serde(default)]` fields may be
/// absent, so both can be added to an existing table. `#[rank]` (or `#[rank(by = "board")]`)
/// on one integer field keeps the objects ranked by it, highest first (per value of `board`),
/// for `Ctx::rank` and `Ctx::rank_range`.
#[proc_macro_derive(Table, attributes(table, primary_key, index, rank))]
pub fn derive_table(item: TokenStream) -> TokenStream {
    match table::expand(item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn module_name(attr: TokenStream2) -> syn::Result<Option<syn::LitStr>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    let mut name = None;
    for meta in metas {
        match meta {
            Meta::NameValue(nv) if nv.path.is_ident("name") => match nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => name = Some(s),
                other => return Err(syn::Error::new(other.span(), "`name` takes a string")),
            },
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "unknown argument: the only one is `name = \"...\"`",
                ));
            }
        }
    }
    Ok(name)
}

fn handler_id(attr: &syn::Attribute) -> syn::Result<u32> {
    let lit: LitInt = attr.parse_args().map_err(|_| {
        syn::Error::new(
            attr.span(),
            "a handler needs its command id: `#[handler(101)]`",
        )
    })?;
    lit.base10_parse::<u32>()
        .map_err(|_| syn::Error::new(lit.span(), "a command id is a u32 literal"))
}

fn timer_tag(attr: &syn::Attribute) -> syn::Result<String> {
    let lit: syn::LitStr = attr.parse_args().map_err(|_| {
        syn::Error::new(
            attr.span(),
            "a timer handler needs its tag: `#[timer(\"respawn\")]`",
        )
    })?;
    let tag = lit.value();
    if tag.is_empty() || tag.len() > 64 {
        return Err(syn::Error::new(lit.span(), "a timer tag is 1 to 64 bytes"));
    }
    Ok(tag)
}

/// The shape every entry function has: `n` arguments, the first `&mut Ctx`, a `Result`
/// returned, not `async`. Checked here so that a wrong one is named at the function, instead
/// of as an unmet bound inside the generated dispatcher. (The types themselves are left to
/// rustc, which names them well: a `Req` that cannot be decoded, say.)
fn check_signature(func: &ItemFn, n: usize, what: &str) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.inputs.len() != n {
        let span = if sig.inputs.is_empty() {
            sig.ident.span()
        } else {
            sig.inputs.span()
        };
        return Err(syn::Error::new(span.resolved_at(Span::call_site()), what));
    }
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span(),
            format!("{what}; it is a plain `fn`, not `async`"),
        ));
    }
    match sig.inputs.first() {
        Some(syn::FnArg::Typed(arg)) if !matches!(&*arg.ty, syn::Type::Reference(r) if r.mutability.is_some()) =>
        {
            return Err(syn::Error::new(
                arg.ty.span(),
                format!("{what}: the context is `&mut Ctx`"),
            ));
        }
        Some(syn::FnArg::Receiver(receiver)) => {
            return Err(syn::Error::new(
                receiver.span(),
                format!("{what}: a function of the module, not a method"),
            ));
        }
        _ => {}
    }
    if let syn::ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!("{what} and returns a `Result`"),
        ));
    }
    Ok(())
}
