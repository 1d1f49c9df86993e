//! TLS on a client listener (`tls: { cert, key }`): rustls with its `ring` provider, the
//! certificate re-read when its files change so a renewed certificate is served without a
//! restart and without dropping a connection.
//!
//! Each handshake takes the configuration current at that moment ([`Tls::acceptor`]);
//! connections already up keep the session keys they agreed on, so swapping it never touches
//! them. A watcher polls the files' modification times ([`RELOAD_POLL`]): simpler and more
//! portable than inotify, and a certificate renewal is not in a hurry. A pair that does not
//! load (say the key is written after the certificate) is logged and retried at the next
//! change; until a good pair is found the previous one keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// How often the certificate and key files are checked for a change.
pub(crate) const RELOAD_POLL: Duration = Duration::from_secs(2);

/// A TLS listener's current configuration.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    /// Swapped whole on reload; each handshake loads it once.
    config: Arc<ArcSwap<ServerConfig>>,
}

/// What identifies a version of the two files: their modification times and sizes.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&files.cert), one(&files.key)]
}

fn load(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_file = files.cert.display();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the TLS certificate {cert_file}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{cert_file}: not a PEM certificate chain"))?;
    if certs.is_empty() {
        anyhow::bail!("{cert_file}: no certificate in it");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the TLS key {} does not go with the certificate {cert_file}",
                files.key.display()
            )
        })?;
    Ok(Arc::new(config))
}

impl Tls {
    /// Loads `files` (an error names the file and what is wrong with it).
    pub fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        Ok(Tls {
            files: files.clone(),
            config: Arc::new(ArcSwap::new(load(files)?)),
        })
    }

    /// An acceptor with the configuration current now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Re-reads the files whenever they change, until `shutdown`.
    pub(crate) async fn watch(self, mut shutdown: watch::Receiver<bool>) {
        let mut seen = stamp(&self.files);
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELOAD_POLL) => {}
                _ = shutdown.changed() => return,
            }
            let now = stamp(&self.files);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.files) {
                Ok(config) => {
                    self.config.store(config);
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                Err(err) => tracing::warn!(
                    cert = %self.files.cert.display(),
                    "TLS certificate not reloaded (the previous one keeps serving): {err:#}"
                ),
            }
        }
    }
}
