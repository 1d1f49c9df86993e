//! Waiting for the signal that stops a long-running command (`up`, `node`).

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
pub(super) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves on a stop signal (Ctrl-C, SIGTERM), or on SIGUSR1, the drain the master sends
/// for `firefly drain` (hand every room to other nodes, then stop).
pub(super) async fn wait_for_stop() -> firefly::node::StopKind {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut drain) = signal(SignalKind::user_defined1()) {
            tokio::select! {
                _ = wait_for_signal() => return firefly::node::StopKind::Stop,
                _ = drain.recv() => return firefly::node::StopKind::Drain,
            }
        }
    }
    wait_for_signal().await;
    firefly::node::StopKind::Stop
}
