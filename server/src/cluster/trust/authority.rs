//! Who may say what in a cluster: per-node credentials issued by the master, the proofs of
//! the mutual handshake, and the master's signature on messages that change the cluster.
//!
//! Only a master holds the cluster secret. From it, it derives (HMAC-SHA256, domain
//! separated) an ed25519 *master key*, and for each node an ed25519 *node key* plus a
//! *certificate*: the master key's signature over the cluster name, the node name and the
//! node's public key. A node process is given, in its environment, its own node key and
//! certificate and the master's public key, and nothing else: it can prove that it is itself
//! and check that a peer is who it claims (certificate and proof verify against the master's
//! public key), but it can neither prove that it is another node (it lacks that node's
//! private key) nor sign as the master. See `docs/security.md`.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use super::Refusal;

/// The environment variable carrying a node's own credential (hex: key seed ‖ certificate).
pub const CREDENTIAL_ENV: &str = "FIREFLY_NODE_CREDENTIAL";
/// The environment variable carrying the master's public key (hex).
pub const MASTER_KEY_ENV: &str = "FIREFLY_MASTER_KEY";
/// The node name the master uses on its links; no node of a topology may take it.
pub use crate::config::MASTER;

/// A process's proof of who it is: its signing key, its certificate, the master's public key
/// and, in a master, the master's signing key.
#[derive(Clone)]
pub struct Credential {
    /// The name it was issued for.
    node: String,
    /// Its own key.
    key: SigningKey,
    /// The master key's signature over (cluster, node, public key).
    cert: Signature,
    /// The master's public key: what every certificate and every deploy is checked against.
    master: VerifyingKey,
    /// Set only in a master (it holds the cluster secret).
    master_key: Option<SigningKey>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("Credential")
            .field("node", &self.node)
            .field("master", &hex::encode(self.master.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 of `parts` (NUL separated) under `secret`: 32 bytes of key material.
fn derive(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

/// The bytes a certificate signs.
fn cert_bytes(cluster: &str, node: &str, key: &VerifyingKey) -> Vec<u8> {
    transcript(&[
        b"firefly node certificate",
        cluster.as_bytes(),
        node.as_bytes(),
        key.as_bytes(),
    ])
}

/// `parts`, each prefixed by its length, so no two different lists give the same bytes.
fn transcript(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

impl Credential {
    /// What a master holding `secret` issues to `node` of `cluster` (for [`MASTER`]: the
    /// master's own credential, holding the master key).
    pub fn issue(secret: &[u8], cluster: &str, node: &str) -> Credential {
        let master_key = SigningKey::from_bytes(&derive(
            secret,
            &[b"firefly master key", cluster.as_bytes()],
        ));
        let key = if node == MASTER {
            master_key.clone()
        } else {
            SigningKey::from_bytes(&derive(
                secret,
                &[b"firefly node key", cluster.as_bytes(), node.as_bytes()],
            ))
        };
        let cert = master_key.sign(&cert_bytes(cluster, node, &key.verifying_key()));
        Credential {
            node: node.to_owned(),
            master: master_key.verifying_key(),
            master_key: (node == MASTER).then_some(master_key),
            key,
            cert,
        }
    }

    /// The environment a node process is started with: its credential and the master's
    /// public key (never the cluster secret, never the master key).
    pub fn to_env(&self) -> [(&'static str, String); 2] {
        let mut both = self.key.to_bytes().to_vec();
        both.extend_from_slice(&self.cert.to_bytes());
        [
            (CREDENTIAL_ENV, hex::encode(both)),
            (MASTER_KEY_ENV, hex::encode(self.master.as_bytes())),
        ]
    }

    /// Parses and checks a credential given as hex (see [`Credential::to_env`]).
    pub fn from_hex(
        cluster: &str,
        node: &str,
        credential: &str,
        master: &str,
    ) -> anyhow::Result<Credential> {
        let mut both = [0u8; 96];
        hex::decode_to_slice(credential.trim(), &mut both)
            .map_err(|_| anyhow::anyhow!("{CREDENTIAL_ENV} is not 96 bytes of hex"))?;
        let mut master_bytes = [0u8; 32];
        hex::decode_to_slice(master.trim(), &mut master_bytes)
            .map_err(|_| anyhow::anyhow!("{MASTER_KEY_ENV} is not 32 bytes of hex"))?;
        let master = VerifyingKey::from_bytes(&master_bytes)
            .map_err(|_| anyhow::anyhow!("{MASTER_KEY_ENV} is not an ed25519 public key"))?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&both[..32]);
        let mut cert = [0u8; 64];
        cert.copy_from_slice(&both[32..]);
        let credential = Credential {
            node: node.to_owned(),
            key: SigningKey::from_bytes(&seed),
            cert: Signature::from_bytes(&cert),
            master,
            master_key: None,
        };
        if !credential.certifies(cluster, node, &credential.key.verifying_key(), &cert) {
            anyhow::bail!(
                "{CREDENTIAL_ENV} was not issued to node `{node}` of cluster `{cluster}` by this master"
            );
        }
        Ok(credential)
    }

    /// The name it was issued for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The master's public key.
    pub fn master_key(&self) -> &VerifyingKey {
        &self.master
    }

    /// Whether this is a master's credential (it can sign cluster changes).
    pub fn is_master(&self) -> bool {
        self.master_key.is_some()
    }

    /// What a peer is shown: the public key and the certificate.
    pub fn public(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.key.verifying_key().to_bytes().to_vec(),
            self.cert.to_bytes().to_vec(),
        )
    }

    /// Whether `cert` is the master's certificate of `key` as node `node` of `cluster`. The
    /// name [`MASTER`] is only ever certified for the master's own key.
    fn certifies(&self, cluster: &str, node: &str, key: &VerifyingKey, cert: &[u8]) -> bool {
        if node == MASTER && key != &self.master {
            return false;
        }
        let Ok(cert) = Signature::from_slice(cert) else {
            return false;
        };
        self.master
            .verify(&cert_bytes(cluster, node, key), &cert)
            .is_ok()
    }

    /// Signs a handshake transcript with this process's own key.
    pub fn prove(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.key.sign(&transcript(parts)).to_bytes().to_vec()
    }

    /// Checks that a peer claiming to be `node` showed a key the master certified for that
    /// name (`key`, `cert`) and signed `parts` with it (`proof`).
    pub fn check_peer(
        &self,
        cluster: &str,
        node: &str,
        key: &[u8],
        cert: &[u8],
        parts: &[&[u8]],
        proof: &[u8],
    ) -> Result<(), Refusal> {
        let who = || node.to_owned();
        let key = <[u8; 32]>::try_from(key)
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(|| Refusal::NoKey { node: who() })?;
        if !self.certifies(cluster, node, &key, cert) {
            return Err(Refusal::NoCertificate { node: who() });
        }
        let proof =
            Signature::from_slice(proof).map_err(|_| Refusal::MalformedProof { node: who() })?;
        key.verify(&transcript(parts), &proof)
            .map_err(|_| Refusal::FailedProof { node: who() })
    }

    /// The master's signature over a deploy (see [`deploy_parts`]); `None` unless this is a
    /// master's credential.
    pub fn sign_as_master(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let key = self.master_key.as_ref()?;
        Some(key.sign(&transcript(parts)).to_bytes().to_vec())
    }

    /// Whether `signature` is the master's over `parts`.
    pub fn signed_by_master(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        Signature::from_slice(signature)
            .is_ok_and(|s| self.master.verify(&transcript(parts), &s).is_ok())
    }
}

/// What the dialing side signs in its `Hello`: both nonces and its name, so the proof is good
/// for this handshake only.
pub fn hello_parts<'a>(
    cluster: &'a str,
    node: &'a str,
    listener_nonce: &'a [u8],
    dialer_nonce: &'a [u8],
) -> [&'a [u8]; 5] {
    [
        b"firefly hello",
        cluster.as_bytes(),
        node.as_bytes(),
        listener_nonce,
        dialer_nonce,
    ]
}

/// What the listening side signs in its `Welcome`: both names and both nonces (distinct from
/// a `Hello`, so one side's proof cannot be reflected back as the other's).
pub fn welcome_parts<'a>(
    cluster: &'a str,
    listener: &'a str,
    dialer: &'a str,
    listener_nonce: &'a [u8],
    dialer_nonce: &'a [u8],
) -> [&'a [u8]; 6] {
    [
        b"firefly welcome",
        cluster.as_bytes(),
        listener.as_bytes(),
        dialer.as_bytes(),
        listener_nonce,
        dialer_nonce,
    ]
}

/// What the master signs for a deploy: the cluster, the target node, the listener's
/// handshake nonce of the link it travels on and the request id on that link (so it is good
/// for one link and one use: the receiver accepts only increasing ids), the module, the
/// version and the SHA-256 of the code.
pub fn deploy_digest(
    cluster: &str,
    target: &str,
    link_nonce: &[u8],
    id: u64,
    module: &str,
    version: u32,
    wasm: &[u8],
) -> Vec<u8> {
    let code: [u8; 32] = Sha256::digest(wasm).into();
    transcript(&[
        b"firefly deploy",
        cluster.as_bytes(),
        target.as_bytes(),
        link_nonce,
        &id.to_be_bytes(),
        module.as_bytes(),
        &version.to_be_bytes(),
        &code,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_cannot_prove_another_name_or_sign_as_master() {
        let gate = Credential::issue(b"secret-0123456789abcdef", "demo", "gate");
        let logic = Credential::issue(b"secret-0123456789abcdef", "demo", "logic");
        let master = Credential::issue(b"secret-0123456789abcdef", "demo", MASTER);
        let (key, cert) = gate.public();
        let proof = gate.prove(&[b"n"]);
        assert!(
            logic
                .check_peer("demo", "gate", &key, &cert, &[b"n"], &proof)
                .is_ok()
        );
        for name in ["logic", MASTER] {
            assert_eq!(
                logic.check_peer("demo", name, &key, &cert, &[b"n"], &proof),
                Err(Refusal::NoCertificate { node: name.into() })
            );
        }
        assert_eq!(
            logic.check_peer("prod", "gate", &key, &cert, &[b"n"], &proof),
            Err(Refusal::NoCertificate {
                node: "gate".into()
            })
        );
        assert_eq!(
            logic.check_peer("demo", "gate", &key, &cert, &[b"m"], &proof),
            Err(Refusal::FailedProof {
                node: "gate".into()
            })
        );
        assert!(gate.sign_as_master(&[b"x"]).is_none());
        let signed = master.sign_as_master(&[b"x"]).unwrap();
        assert!(logic.signed_by_master(&[b"x"], &signed));
        assert!(!logic.signed_by_master(&[b"y"], &signed));
        assert!(!logic.signed_by_master(&[b"x"], &gate.prove(&[b"x"])));
        let [(_, c), (_, m)] = gate.to_env();
        let back = Credential::from_hex("demo", "gate", &c, &m).unwrap();
        assert_eq!(back.public(), gate.public());
        assert!(Credential::from_hex("demo", "logic", &c, &m).is_err());
        let other = Credential::issue(b"another-secret-0123456789", "demo", "gate");
        assert!(
            logic
                .check_peer(
                    "demo",
                    "gate",
                    &other.public().0,
                    &other.public().1,
                    &[b"n"],
                    &other.prove(&[b"n"])
                )
                .is_err()
        );
    }
}
