//! The cluster secret and the handshake proof.
//!
//! A node accepts a connection only from a peer that signs a fresh random nonce with the
//! cluster secret (HMAC-SHA256 over nonce, cluster name and the peer's node name), so a
//! stranger cannot join or call anything without the secret, and a recorded handshake
//! cannot be replayed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable that carries the cluster secret to node processes.
pub const SECRET_ENV: &str = "FIREFLY_CLUSTER_SECRET";

/// The proof a peer sends for `nonce`.
pub fn proof(secret: &[u8], nonce: &[u8], cluster: &str, node: &str) -> Vec<u8> {
    mac(secret, nonce, cluster, node)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a proof in constant time.
pub fn verify(secret: &[u8], nonce: &[u8], cluster: &str, node: &str, proof: &[u8]) -> bool {
    mac(secret, nonce, cluster, node)
        .verify_slice(proof)
        .is_ok()
}

fn mac(secret: &[u8], nonce: &[u8], cluster: &str, node: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(nonce);
    mac.update(&[0]);
    mac.update(cluster.as_bytes());
    mac.update(&[0]);
    mac.update(node.as_bytes());
    mac
}

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
    fn proofs_bind_secret_nonce_cluster_and_node() {
        let p = proof(b"s3cret", b"nonce", "demo", "gate");
        assert!(verify(b"s3cret", b"nonce", "demo", "gate", &p));
        assert!(!verify(b"other", b"nonce", "demo", "gate", &p));
        assert!(!verify(b"s3cret", b"nonce2", "demo", "gate", &p));
        assert!(!verify(b"s3cret", b"nonce", "demo", "game", &p));
        assert!(!verify(b"s3cret", b"nonce", "prod", "gate", &p));
        assert_ne!(generate_secret(), generate_secret());
    }
}
