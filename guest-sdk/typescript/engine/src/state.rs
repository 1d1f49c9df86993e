//! What the engine keeps between calls: the QuickJS runtime, the registered handlers, the
//! manifest, and the call in progress.
//!
//! All of it lives in statics. A module instance is single-threaded and its memory is the
//! Wizer snapshot taken after [`boot`], so these are set once at build time and only read by
//! the host's calls afterwards.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Read as _;

use firefly_abi::{ABI_VERSION, DispatchKind, Manifest, data::TableSchema};
use rquickjs::context::EvalOptions;
use rquickjs::{Context, Ctx, Function, Persistent, Runtime};

/// QuickJS's own stack limit, below the 1 MiB shadow stack Rust gives a wasm module, so deep
/// JavaScript recursion becomes a `RangeError` before it can overrun linear memory. (The host's
/// `stack` limit on the wasm call stack may stop it earlier, as a trap.)
const JS_STACK: usize = 512 * 1024;

/// The version of the TypeScript SDK recorded in the manifest.
const SDK_VERSION: &str = concat!("ts-", env!("CARGO_PKG_VERSION"));

/// The live engine.
pub struct Engine {
    /// Kept alive for the context; never dropped.
    _runtime: Runtime,
    /// The one context every handler runs in.
    pub context: Context,
    /// The MessagePack manifest `__firefly_describe` writes.
    pub manifest: Vec<u8>,
}

/// A registered handler.
#[derive(Clone)]
pub struct Handler {
    /// The JavaScript function (the SDK's wrapper around the module's function).
    pub function: Persistent<Function<'static>>,
    /// Payloads cross as `Uint8Array`, not decoded MessagePack.
    pub raw: bool,
}

/// What the script registered while it ran: `(kind, key, handler)`, key being the command id
/// or, for timers, the tag.
pub struct Registration {
    pub kind: u32,
    pub key: Key,
    pub handler: Handler,
}

/// A handler's key as registered.
pub enum Key {
    /// A command id (requests), or 0 for events.
    Id(u32),
    /// A timer tag.
    Tag(String),
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static HANDLERS: RefCell<HashMap<(u32, u32), Handler>> = RefCell::new(HashMap::new());
    /// Filled while the script runs, consumed by `boot`.
    static REGISTERED: RefCell<Vec<Registration>> = const { RefCell::new(Vec::new()) };
    /// Table schemas the script declared (MessagePack of a `TableSchema`).
    static TABLES: RefCell<Vec<TableSchema>> = const { RefCell::new(Vec::new()) };
    /// The session and command of the call in progress.
    static CALL: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    /// The SDK's `ctx` object, handed to every handler as its first argument.
    static CONTEXT: RefCell<Option<Persistent<rquickjs::Value<'static>>>> = const { RefCell::new(None) };
    /// Set once the script has run: registering afterwards is an error.
    static BOOTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the engine. Traps when the module was not pre-initialised.
pub fn with_engine<R>(f: impl FnOnce(&Engine) -> R) -> R {
    ENGINE.with(|engine| match engine.borrow().as_ref() {
        Some(engine) => f(engine),
        None => {
            crate::raw::log(
                firefly_abi::log_level::ERROR,
                "this TypeScript module was not pre-initialised (build it with `firefly build`)",
            );
            std::process::abort()
        }
    })
}

/// Records the call in progress (what `ctx.session` and `ctx.command` read).
pub fn set_call(session: u64, command: u32) {
    CALL.with(|c| c.set((session, command)));
}

/// The session and command of the call in progress.
pub fn call() -> (u64, u32) {
    CALL.with(Cell::get)
}

/// Keeps the SDK's `ctx` object (`__firefly.setContext`).
pub fn set_context(value: Persistent<rquickjs::Value<'static>>) {
    CONTEXT.with(|c| *c.borrow_mut() = Some(value));
}

/// The SDK's `ctx` object (`undefined` when the SDK set none).
pub fn context_object<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<rquickjs::Value<'js>> {
    match CONTEXT.with(|c| c.borrow().clone()) {
        Some(value) => value.restore(ctx),
        None => Ok(rquickjs::Value::new_undefined(ctx.clone())),
    }
}

/// The handler for `(kind, id)`, if the module registered one.
pub fn handler(kind: u32, id: u32) -> Option<Handler> {
    HANDLERS.with(|h| h.borrow().get(&(kind, id)).cloned())
}

/// Records a handler the script registers; refused after the script has run.
pub fn register(registration: Registration) -> Result<(), String> {
    if BOOTED.with(Cell::get) {
        return Err("handlers are registered when the module loads, not inside a handler".into());
    }
    REGISTERED.with(|r| r.borrow_mut().push(registration));
    Ok(())
}

/// Records a table the script declares.
pub fn declare_table(schema: TableSchema) -> Result<(), String> {
    if BOOTED.with(Cell::get) {
        return Err("tables are declared when the module loads, not inside a handler".into());
    }
    TABLES.with(|t| t.borrow_mut().push(schema));
    Ok(())
}

/// Reads the bundle from stdin, runs it and keeps the engine. The error names the file and
/// line where the script failed.
pub fn boot() -> Result<(), String> {
    let mut source = String::new();
    std::io::stdin()
        .read_to_string(&mut source)
        .map_err(|e| format!("cannot read the module's script: {e}"))?;
    let (name, script) = source
        .split_once('\n')
        .ok_or("the module's script must start with its name on a line of its own")?;
    let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
    runtime.set_max_stack_size(JS_STACK);
    let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
    let loaded = context.with(|ctx| -> Result<(), String> {
        crate::host::install(&ctx).map_err(|e| format!("cannot install the host API: {e}"))?;
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some("module.js".to_owned());
        match ctx.eval_with_options::<(), _>(script, options) {
            Ok(()) => Ok(()),
            Err(rquickjs::Error::Exception) => {
                Err(format!("the module threw at load: {}", thrown(&ctx)))
            }
            Err(e) => Err(format!("the module failed at load: {e}")),
        }
    });
    BOOTED.with(|b| b.set(true));
    let manifest = loaded.and_then(|()| manifest(name.trim()));
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(message) => {
            // Objects the script made are still referenced (handlers, the exception): freeing
            // the runtime now would trip QuickJS's leak assertion over our message. The
            // instance traps right after; nothing needs freeing.
            std::mem::forget(context);
            std::mem::forget(runtime);
            return Err(message);
        }
    };
    ENGINE.with(|e| {
        *e.borrow_mut() = Some(Engine {
            _runtime: runtime,
            context,
            manifest,
        })
    });
    Ok(())
}

/// The pending exception's message and stack, for load errors.
fn thrown(ctx: &Ctx<'_>) -> String {
    let caught = ctx.catch();
    if let Some(object) = caught.as_object() {
        let get = |key: &str| {
            object
                .get::<_, rquickjs::Value>(key)
                .ok()
                .and_then(|v| v.as_string().and_then(|s| s.to_string().ok()))
                .unwrap_or_default()
        };
        let name = get("name");
        let message = get("message");
        let stack = get("stack");
        return format!("{name}: {message}\n{stack}");
    }
    match caught.as_string().and_then(|s| s.to_string().ok()) {
        Some(s) => s,
        None => format!("a {} was thrown", caught.type_name()),
    }
}

/// Turns the registrations into the handler table and the manifest.
fn manifest(name: &str) -> Result<Vec<u8>, String> {
    let registered = REGISTERED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    let mut tags: Vec<String> = registered
        .iter()
        .filter_map(|r| match &r.key {
            Key::Tag(tag) => Some(tag.clone()),
            Key::Id(_) => None,
        })
        .collect();
    tags.sort();
    if let Some(pair) = tags.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("two timer handlers for tag `{}`", pair[0]));
    }
    let mut handlers = HashMap::new();
    let mut commands = Vec::new();
    let mut events = Vec::new();
    for r in registered {
        let id = match r.key {
            Key::Id(id) => id,
            Key::Tag(tag) => tags.iter().position(|t| *t == tag).unwrap_or(0) as u32,
        };
        let event = match DispatchKind::from_u32(r.kind) {
            Some(DispatchKind::Request) => {
                commands.push(id);
                None
            }
            Some(DispatchKind::Connect) => Some("connect"),
            Some(DispatchKind::Disconnect) => Some("disconnect"),
            Some(DispatchKind::RoomTick) => Some("room_tick"),
            Some(DispatchKind::RoomEvent) => Some("room_event"),
            Some(DispatchKind::Timer) => None,
            None => return Err(format!("unknown handler kind {}", r.kind)),
        };
        if let Some(event) = event {
            events.push(event.to_owned());
        }
        if handlers.insert((r.kind, id), r.handler).is_some() {
            return Err(match event {
                Some(event) => format!("two `{event}` handlers"),
                None => format!("two handlers for command {id}"),
            });
        }
    }
    if handlers.is_empty() {
        return Err(
            "the module registers no handler: call `handle(command, fn)` at least once".into(),
        );
    }
    commands.sort_unstable();
    let manifest = Manifest {
        abi: ABI_VERSION,
        sdk: SDK_VERSION.to_owned(),
        name: name.to_owned(),
        commands,
        events,
        tables: TABLES.with(|t| t.borrow().clone()),
        timers: tags,
    };
    HANDLERS.with(|h| *h.borrow_mut() = handlers);
    rmp_serde::to_vec_named(&manifest).map_err(|e| format!("cannot encode the manifest: {e}"))
}
