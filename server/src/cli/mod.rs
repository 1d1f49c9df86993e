//! Subcommands of the `firefly` binary: this file is the clap definition and the dispatch;
//! each subcommand has the file of its name (`up.rs`, `node.rs`, `status.rs`, ...), and what
//! several share has its own: `admin.rs` (requests to the master's admin API), `build.rs`'s
//! `module_files` (the `.wasm` of a topology's modules), `signal.rs` (waiting for Ctrl-C or
//! SIGTERM).

mod admin;
mod build;
mod call;
mod client_gen;
mod deploy;
mod new;
mod new_ts;
mod node;
mod rollback;
mod sdk_path;
mod signal;
mod status;
mod stop;
mod up;
mod versions;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Firefly: game logic in WebAssembly, served to Firefly-protocol clients.
#[derive(Debug, Parser)]
#[command(name = "firefly", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands; each one's arguments and function live in the file of its name.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cluster described by a topology file: builds its modules, starts every node
    /// as its own process, restarts nodes that die, serves the admin API.
    Up(up::UpArgs),
    /// Run one node of a topology in this process (what `up` starts for each node).
    Node(node::NodeArgs),
    /// Show the running cluster: nodes, pids, uptime, restarts, connections, requests, errors,
    /// module versions.
    Status(admin::AdminArgs),
    /// Stop the running cluster gracefully.
    Stop(admin::AdminArgs),
    /// Drain a node: it hands every room it holds to other nodes, then stops (not restarted).
    Drain(stop::DrainArgs),
    /// Build module crates to wasm (all modules of the topology when no crate is named).
    Build(build::BuildArgs),
    /// Scaffold a new module crate that builds and answers a command out of the box.
    New(new::NewArgs),
    /// Send one request to a running gate and print the reply (or error frame) as JSON.
    Call(call::CallArgs),
    /// Hot-update a module on the running cluster: build it if a crate is given, upload it;
    /// the master validates it, stores it as the next version and has every node hosting it
    /// swap to it without failing a request. `--watch` redeploys on every source change.
    Deploy(deploy::DeployArgs),
    /// Go back to an earlier version of a module (the previous one unless `--to N`).
    Rollback(rollback::RollbackArgs),
    /// List a module's deployed versions: number, time, hash, size, which is active.
    Versions(versions::VersionsArgs),
    /// Write a typed client (TypeScript, Python or C#) for a module, from the types it
    /// declares: one method per command, one subscription per push topic.
    ClientGen(client_gen::ClientGenArgs),
}

/// Sets up `tracing` output on stderr.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug,wasmtime=info,cranelift=info",
        _ => "trace,wasmtime=info,cranelift=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::up(args).await,
        Command::Node(args) => node::node(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Stop(args) => stop::stop(args).await,
        Command::Drain(args) => stop::drain(args).await,
        Command::Build(args) => build::build(args),
        Command::New(args) => new::new(args),
        Command::Call(args) => call::call(args).await,
        Command::Deploy(args) if args.watch => watch::watch(args).await,
        Command::Deploy(args) => deploy::deploy(args).await,
        Command::Rollback(args) => rollback::rollback(args).await,
        Command::Versions(args) => versions::versions(args).await,
        Command::ClientGen(args) => client_gen::client_gen(args),
    }
}

/// Loads the topology at `path` with what this process's environment says about it: the
/// environment is read here, at the edge, and never inside the library.
/// * `FIREFLY_CACHE_DIR` moves the cache of precompiled modules;
/// * `FIREFLY_NATS_TOKEN`, or `FIREFLY_NATS_USER` + `FIREFLY_NATS_PASSWORD`, or
///   `FIREFLY_NATS_NKEY` replace the NATS credentials of the file.
fn load_topology(path: &std::path::Path) -> anyhow::Result<firefly::config::Topology> {
    let mut topology = firefly::config::Topology::load(path)?;
    let var = env_var;
    if let Some(dir) = var(firefly::config::CACHE_DIR_ENV) {
        topology.cache_dir = PathBuf::from(dir);
    }
    if let firefly::config::Transport::Nats(spec) = &mut topology.transport
        && let Some(auth) = nats_auth_from_env(var)
    {
        spec.auth = auth;
    }
    Ok(topology)
}

/// Environment variable `name`, unless unset or empty. The CLI is the one place that reads the
/// environment: the secrets, the admin token, a node's credential, the cache directory and the
/// NATS credentials are passed into the library from here.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The NATS credentials the environment gives, if any.
fn nats_auth_from_env(var: impl Fn(&str) -> Option<String>) -> Option<firefly::config::NatsAuth> {
    use firefly::cluster::nats::{NKEY_ENV, PASSWORD_ENV, TOKEN_ENV, USER_ENV};
    use firefly::config::NatsAuth;
    if let Some(token) = var(TOKEN_ENV) {
        return Some(NatsAuth::Token(token));
    }
    if let (Some(user), Some(password)) = (var(USER_ENV), var(PASSWORD_ENV)) {
        return Some(NatsAuth::UserPassword { user, password });
    }
    var(NKEY_ENV).map(NatsAuth::NKey)
}

/// The topology file a subcommand reads unless `-c` says otherwise.
fn default_topology() -> PathBuf {
    PathBuf::from("topology.yaml")
}
