//! `firefly status`: the running cluster as a table (or the master's JSON).

use super::admin::{self, AdminArgs};

/// Asks the master for `/status` and prints it: one row per node, then each node's deploy
/// failures.
pub async fn status(args: AdminArgs) -> anyhow::Result<()> {
    let body = admin::call(&args.config, "GET", "/status").await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let status: serde_json::Value = serde_json::from_str(&body)?;
    let ready = if status["ready"] == true {
        "ready: every node is up and linked"
    } else {
        "not ready"
    };
    println!(
        "cluster {}, {ready}",
        status["cluster"].as_str().unwrap_or("?")
    );
    println!(
        "{:<14} {:<8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>7} {:>6}  MODULES",
        "NODE", "STATE", "PID", "UPTIME", "RESTART", "CONNS", "REQUESTS", "ERRORS", "ROOMS"
    );
    for n in status["nodes"].as_array().into_iter().flatten() {
        println!("{}", row(n));
    }
    for n in status["nodes"].as_array().into_iter().flatten() {
        for (module, f) in n["deploy_failures"].as_object().into_iter().flatten() {
            println!(
                "{}: {module} v{} failed to load: {}",
                n["name"].as_str().unwrap_or("?"),
                f["version"],
                f["error"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// One node's row of the table.
fn row(n: &serde_json::Value) -> String {
    let live = &n["live"];
    let state = if n["healthy"] == true && n["ready"] == false {
        // Up, but a link it needs (a route's target, the data owner) is not.
        "linking"
    } else if n["healthy"] == true {
        "healthy"
    } else if n["drained"] == true && n["pid"].is_null() {
        "drained"
    } else if n["pid"].is_null() {
        "down"
    } else {
        "starting"
    };
    let modules: Vec<String> = live["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or("?");
            match n["deploy_failures"].get(name) {
                Some(f) => format!(
                    "{name}@v{} (v{} failed to load)",
                    m["version"], f["version"]
                ),
                None => format!("{name}@v{}", m["version"]),
            }
        })
        .collect();
    let num = |v: &serde_json::Value| {
        v.as_u64()
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{:<14} {:<8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>7} {:>6}  {}",
        n["name"].as_str().unwrap_or("?"),
        state,
        num(&n["pid"]),
        n["uptime_secs"]
            .as_u64()
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "-".into()),
        num(&n["restarts"]),
        num(&live["connections"]),
        num(&live["requests"]),
        num(&live["errors"]),
        num(&live["rooms"]),
        modules.join(" "),
    )
}
