//! Prometheus metrics of a node: requests, errors and latency per command id and module
//! version; sessions and connections; node-to-node calls and failures per peer.
//!
//! Recording stays off shared cache lines: every module version keeps, per command, one
//! cache-padded cell per stripe (threads are spread over the stripes as in [`crate::counter`]),
//! so a worker thread only ever writes its own cell; a scrape sums the stripes. Served as
//! plain text on `GET /metrics` by [`http`] when the node's topology entry has `metrics:`.

pub mod clock;
pub mod http;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::counter::{STRIPES, stripe};

/// Upper bounds of the latency buckets, in microseconds (the last bucket is `+Inf`).
pub const BUCKETS_US: [u64; 15] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    2_500_000, 5_000_000,
];

const SLOTS: usize = BUCKETS_US.len() + 1;

#[derive(Default)]
struct Cell {
    requests: AtomicU64,
    errors: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; SLOTS],
}

/// One command's counters, striped per thread.
#[derive(Default)]
struct CommandCells {
    stripes: [CachePadded<Cell>; STRIPES],
}

/// One command's totals, summed over the stripes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandTotals {
    /// Requests served.
    pub requests: u64,
    /// Of which failed (any error reply).
    pub errors: u64,
    /// Summed latency, microseconds.
    pub sum_us: u64,
    /// Requests per latency bucket (not cumulative; the last is above every bound).
    pub buckets: [u64; SLOTS],
}

/// The per-command metrics of one module version.
#[derive(Default)]
pub struct ModuleMetrics {
    commands: Vec<u32>,
    cells: Vec<CommandCells>,
}

impl std::fmt::Debug for ModuleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleMetrics")
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

fn slot(us: u64) -> usize {
    BUCKETS_US.partition_point(|&bound| bound < us)
}

impl ModuleMetrics {
    /// Metrics for a module handling `commands` (sorted, as in its manifest).
    pub fn for_commands(commands: &[u32]) -> Self {
        clock::calibrate();
        Self {
            commands: commands.to_vec(),
            cells: commands.iter().map(|_| CommandCells::default()).collect(),
        }
    }

    /// Records one request to `command` that started at `started` ([`clock::ticks`]) and
    /// ended now.
    pub fn record_since(&self, command: u32, started: u64, failed: bool) {
        self.record_us(
            command,
            clock::micros_between(started, clock::ticks()),
            failed,
        );
    }

    /// Records several requests, each `(command, microseconds, failed)`, as one batch of
    /// dispatch serves them: a run of requests to the same command costs one look-up and one
    /// add per counter touched, instead of three or four atomic adds per request.
    pub fn record_many(&self, requests: impl IntoIterator<Item = (u32, u64, bool)>) {
        struct Run {
            index: usize,
            requests: u64,
            errors: u64,
            sum_us: u64,
            buckets: [u64; SLOTS],
        }
        let flush = |run: &Run| {
            let Some(cells) = self.cells.get(run.index) else {
                return;
            };
            let cell = &cells.stripes[stripe()];
            cell.requests.fetch_add(run.requests, Ordering::Relaxed);
            if run.errors > 0 {
                cell.errors.fetch_add(run.errors, Ordering::Relaxed);
            }
            cell.sum_us.fetch_add(run.sum_us, Ordering::Relaxed);
            for (bucket, &n) in cell.buckets.iter().zip(&run.buckets) {
                if n > 0 {
                    bucket.fetch_add(n, Ordering::Relaxed);
                }
            }
        };
        let mut current: Option<(u32, Run)> = None;
        for (command, us, failed) in requests {
            let same = current.as_ref().is_some_and(|(c, _)| *c == command);
            if !same {
                if let Some((_, run)) = current.take() {
                    flush(&run);
                }
                let Ok(index) = self.commands.binary_search(&command) else {
                    continue;
                };
                current = Some((
                    command,
                    Run {
                        index,
                        requests: 0,
                        errors: 0,
                        sum_us: 0,
                        buckets: [0; SLOTS],
                    },
                ));
            }
            if let Some((_, run)) = current.as_mut() {
                run.requests += 1;
                run.errors += u64::from(failed);
                run.sum_us += us;
                run.buckets[slot(us)] += 1;
            }
        }
        if let Some((_, run)) = current {
            flush(&run);
        }
    }

    /// Records one request to `command` that took `us` microseconds.
    pub fn record_us(&self, command: u32, us: u64, failed: bool) {
        let Ok(i) = self.commands.binary_search(&command) else {
            return;
        };
        let Some(cells) = self.cells.get(i) else {
            return;
        };
        let cell = &cells.stripes[stripe()];
        cell.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            cell.errors.fetch_add(1, Ordering::Relaxed);
        }
        cell.sum_us.fetch_add(us, Ordering::Relaxed);
        cell.buckets[slot(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every command with its totals.
    pub fn totals(&self) -> Vec<(u32, CommandTotals)> {
        self.commands
            .iter()
            .zip(&self.cells)
            .map(|(&command, cells)| {
                let mut t = CommandTotals::default();
                for cell in &cells.stripes {
                    t.requests += cell.requests.load(Ordering::Relaxed);
                    t.errors += cell.errors.load(Ordering::Relaxed);
                    t.sum_us += cell.sum_us.load(Ordering::Relaxed);
                    for (sum, b) in t.buckets.iter_mut().zip(&cell.buckets) {
                        *sum += b.load(Ordering::Relaxed);
                    }
                }
                (command, t)
            })
            .collect()
    }
}

/// What a scrape reports about one peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTotals {
    /// The peer's node name.
    pub peer: String,
    /// Requests sent to it.
    pub calls: u64,
    /// Of which failed (unreachable, lost, timed out).
    pub failures: u64,
}

/// One module's timers on a node.
#[derive(Debug, Clone, Default)]
pub struct TimerCounts {
    /// The module.
    pub module: String,
    /// Timers waiting to fire.
    pub pending: u64,
    /// Firings handed to the module.
    pub fired: u64,
    /// Firings whose handler failed.
    pub failed: u64,
    /// Firings that ran 100 ms or more late.
    pub late: u64,
}

/// One module version's per-command totals: (module, version, per command).
pub type ModuleTotals = (String, u32, Vec<(u32, CommandTotals)>);

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The node's name.
    pub node: String,
    /// Open client connections.
    pub connections: u64,
    /// Sessions held (connected or parked for resume).
    pub sessions: u64,
    /// Requests the gate served, and of those failed.
    pub gate_requests: u64,
    /// Requests the gate answered with an error.
    pub gate_errors: u64,
    /// Per module version: (module, version, per-command totals).
    pub modules: Vec<ModuleTotals>,
    /// Per peer.
    pub peers: Vec<PeerTotals>,
    /// Write-behind counters, when this node opened a data store.
    pub data: Option<crate::data::FlushStats>,
    /// Per module that started timers.
    pub timers: Vec<TimerCounts>,
    /// What the client edge refused or cut off.
    pub edge: EdgeTotals,
}

/// The client edge's refusals since start (see [`crate::routing::EdgeStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeTotals {
    /// Connections refused at the listener's `max_connections`.
    pub refused_listener_cap: u64,
    /// Connections refused at their address's `max_connections_per_ip`.
    pub refused_ip_cap: u64,
    /// Requests answered `rate_limited`.
    pub rate_limited: u64,
    /// Connections closed after `write_stall` without the client reading.
    pub write_stalls: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: u64,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A counter family drawn from totals of type `T`: its name, its help, and its value.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);

/// A family of any kind drawn from totals of type `T`: its name, its kind, its help, its value.
type Kinded<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Writes a metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

impl Snapshot {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let node = escape(&self.node);
        self.render_node(&mut out, &node);
        self.render_edge(&mut out, &node);
        self.render_commands(&mut out, &node);
        self.render_latency(&mut out, &node);
        self.render_peers(&mut out, &node);
        self.render_timers(&mut out, &node);
        out
    }

    /// The node-wide gauges and counters: connections, sessions, the gate, the data store.
    fn render_node(&self, out: &mut String, node: &str) {
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {v}");
        };
        let gauge = "gauge";
        let counter = "counter";
        one(
            "firefly_connections",
            gauge,
            "Open client connections.",
            self.connections,
        );
        one(
            "firefly_sessions",
            gauge,
            "Sessions held: connected, or parked waiting for their client to resume.",
            self.sessions,
        );
        one(
            "firefly_gate_requests_total",
            counter,
            "Requests this node's gate served (locally or forwarded).",
            self.gate_requests,
        );
        one(
            "firefly_gate_errors_total",
            counter,
            "Requests this node's gate answered with an error frame.",
            self.gate_errors,
        );
        let Some(d) = &self.data else {
            return;
        };
        one(
            "firefly_data_flushed_rows_total",
            counter,
            "Objects this node wrote behind to SQL.",
            d.flushed_rows,
        );
        one(
            "firefly_data_flush_failures_total",
            counter,
            "Flushes to SQL that failed (the objects stayed dirty and were retried).",
            d.flush_failures,
        );
        one(
            "firefly_data_journal_failures_total",
            counter,
            "Journal commits that failed and were retried (embedded cache).",
            d.journal_failures,
        );
        one(
            "firefly_data_dirty_objects",
            gauge,
            "Objects not yet in SQL (with Redis: as this node's last flush saw them).",
            d.dirty,
        );
    }

    /// The client edge: refused connections by cap, rate-limited requests, stalled clients.
    fn render_edge(&self, out: &mut String, node: &str) {
        let e = &self.edge;
        let name = "firefly_connections_refused_total";
        family(
            out,
            name,
            "counter",
            "Client connections refused at a connection cap, by cap (max_connections, max_connections_per_ip).",
        );
        for (cap, v) in [
            ("listener", e.refused_listener_cap),
            ("ip", e.refused_ip_cap),
        ] {
            let _ = writeln!(out, "{name}{{node=\"{node}\",cap=\"{cap}\"}} {v}");
        }
        for (name, help, v) in [
            (
                "firefly_rate_limited_total",
                "Requests answered with a rate_limited error frame (not served).",
                e.rate_limited,
            ),
            (
                "firefly_write_stall_disconnects_total",
                "Client connections closed because the client read nothing for write_stall.",
                e.write_stalls,
            ),
            (
                "firefly_tls_handshake_failures_total",
                "TLS handshakes on client listeners that failed or timed out.",
                e.tls_handshake_failures,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {v}");
        }
    }

    /// Calls `each` with the labels and totals of every command of every module version.
    fn each_command(&self, node: &str, mut each: impl FnMut(&str, &CommandTotals)) {
        for (module, version, commands) in &self.modules {
            let m = escape(module);
            for (command, t) in commands {
                let labels = format!(
                    "node=\"{node}\",module=\"{m}\",version=\"{version}\",command=\"{command}\""
                );
                each(&labels, t);
            }
        }
    }

    /// Requests and errors per command and module version.
    fn render_commands(&self, out: &mut String, node: &str) {
        let counters: [Series<CommandTotals>; 2] = [
            (
                "firefly_requests_total",
                "Requests served by a module version, per command.",
                |t| t.requests,
            ),
            (
                "firefly_request_errors_total",
                "Requests that failed, per command and module version.",
                |t| t.errors,
            ),
        ];
        for (name, help, value) in counters {
            family(out, name, "counter", help);
            self.each_command(node, |labels, t| {
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(t));
            });
        }
    }

    /// The latency histogram per command and module version.
    fn render_latency(&self, out: &mut String, node: &str) {
        let name = "firefly_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time a module version took to serve a request, per command.",
        );
        self.each_command(node, |labels, t| {
            let mut cumulative = 0;
            for (i, count) in t.buckets.iter().enumerate() {
                cumulative += count;
                let le = match BUCKETS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_owned(),
                };
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", t.sum_us as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", t.requests);
        });
    }

    /// Pending timers and firings per module.
    fn render_timers(&self, out: &mut String, node: &str) {
        let series: [Kinded<TimerCounts>; 4] = [
            (
                "firefly_timers_pending",
                "gauge",
                "Timers waiting to fire, per module.",
                |t| t.pending,
            ),
            (
                "firefly_timer_firings_total",
                "counter",
                "Timer firings handed to a module.",
                |t| t.fired,
            ),
            (
                "firefly_timer_failures_total",
                "counter",
                "Timer firings whose handler failed (error, trap, timeout, no handler).",
                |t| t.failed,
            ),
            (
                "firefly_timer_late_firings_total",
                "counter",
                "Timer firings that ran 100 ms or more after their scheduled time.",
                |t| t.late,
            ),
        ];
        for (name, kind, help, value) in series {
            family(out, name, kind, help);
            for t in &self.timers {
                let m = escape(&t.module);
                let _ = writeln!(out, "{name}{{node=\"{node}\",module=\"{m}\"}} {}", value(t));
            }
        }
    }

    /// Calls and failures per peer.
    fn render_peers(&self, out: &mut String, node: &str) {
        let counters: [Series<PeerTotals>; 2] = [
            (
                "firefly_rpc_calls_total",
                "Requests sent to another node.",
                |p| p.calls,
            ),
            (
                "firefly_rpc_failures_total",
                "Requests to another node that failed (unreachable, lost or timed out).",
                |p| p.failures,
            ),
        ];
        for (name, help, value) in counters {
            family(out, name, "counter", help);
            for p in &self.peers {
                let peer = escape(&p.peer);
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{node}\",peer=\"{peer}\"}} {}",
                    value(p)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_a_batch_equals_recording_each_request() {
        let requests = [
            (101, 40, false),
            (101, 700, true),
            (101, 60, false),
            (999, 1, false),
            (103, 9_000_000, false),
            (101, 10, true),
        ];
        let one_by_one = ModuleMetrics::for_commands(&[101, 103]);
        for (command, us, failed) in requests {
            one_by_one.record_us(command, us, failed);
        }
        let batched = ModuleMetrics::for_commands(&[101, 103]);
        batched.record_many(requests);
        assert_eq!(batched.totals(), one_by_one.totals());
        assert_eq!(batched.totals()[0].1.requests, 4);
    }

    #[test]
    fn records_per_command_and_renders_cumulative_buckets() {
        let m = ModuleMetrics::for_commands(&[101, 103]);
        m.record_us(101, 40, false);
        m.record_us(101, 700, true);
        m.record_us(103, 9_000_000, false);
        m.record_us(999, 1, false);
        let totals = m.totals();
        assert_eq!(totals[0].1.requests, 2);
        assert_eq!(totals[0].1.errors, 1);
        assert_eq!(totals[0].1.sum_us, 740);
        assert_eq!(totals[1].1.buckets[SLOTS - 1], 1);
        let text = Snapshot {
            node: "n".into(),
            modules: vec![("lobby".into(), 1, totals)],
            data: Some(crate::data::FlushStats {
                flushed_rows: 12,
                dirty: 3,
                ..Default::default()
            }),
            ..Snapshot::default()
        }
        .render();
        assert!(text.contains("firefly_data_flushed_rows_total{node=\"n\"} 12\n"));
        assert!(text.contains("firefly_data_dirty_objects{node=\"n\"} 3\n"));
        assert!(text.contains("firefly_connections_refused_total{node=\"n\",cap=\"ip\"} 0\n"));
        assert!(text.contains("firefly_rate_limited_total{node=\"n\"} 0\n"));
        let line = |l: &str| text.lines().any(|x| x == l);
        assert!(line(
            "firefly_requests_total{node=\"n\",module=\"lobby\",version=\"1\",command=\"101\"} 2"
        ));
        assert!(line(
            "firefly_request_duration_seconds_bucket{node=\"n\",module=\"lobby\",version=\"1\",command=\"101\",le=\"0.00005\"} 1"
        ));
        assert!(line(
            "firefly_request_duration_seconds_bucket{node=\"n\",module=\"lobby\",version=\"1\",command=\"101\",le=\"0.001\"} 2"
        ));
        assert!(line(
            "firefly_request_duration_seconds_bucket{node=\"n\",module=\"lobby\",version=\"1\",command=\"103\",le=\"+Inf\"} 1"
        ));
    }
}
