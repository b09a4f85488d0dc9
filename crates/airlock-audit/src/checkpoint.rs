//! Signed checkpoints and the Ed25519 keys that sign them.
//!
//! A checkpoint commits to the first `size` records of one tenant's log:
//! their Merkle root and the chain value after the last of them. The signed
//! message is this text (every line ends in `\n`):
//!
//! ```text
//! airlock-audit-checkpoint/v1
//! tenant <tenant id>
//! seq <checkpoint sequence number>
//! size <records covered>
//! root <hex Merkle root>
//! chain <hex chain value after record size-1>
//! time <microseconds since the Unix epoch>
//! ```
//!
//! A checkpoint is stored as one line of JSON (the checkpoint file holds one
//! per line): `{"v":1,"tenant":..,"seq":..,"size":..,"root":..,"chain":..,"time":..,"sig":..}`
//! with hashes and the signature in lowercase hex. Only the signed message
//! above matters for verification; the JSON is a container.

use crate::merkle::Hash;
use airlock_types::{Secret, TenantId};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The first word of a public key file.
const PUBKEY_TAG: &str = "airlock-audit-ed25519";

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version (1).
    pub v: u32,
    /// The tenant whose log this is.
    pub tenant: TenantId,
    /// 0-based sequence number of this checkpoint.
    pub seq: u64,
    /// Number of records covered.
    pub size: u64,
    /// Merkle root of the first `size` records.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// Chain value after record `size - 1`.
    #[serde(with = "hex_hash")]
    pub chain: Hash,
    /// When it was made (µs since the epoch).
    pub time: i64,
    /// Ed25519 signature over [`Checkpoint::signed_message`].
    #[serde(with = "hex_bytes")]
    pub sig: Vec<u8>,
}

impl Checkpoint {
    /// The exact bytes the signature covers.
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "airlock-audit-checkpoint/v1\ntenant {}\nseq {}\nsize {}\nroot {}\nchain {}\ntime {}\n",
            self.tenant,
            self.seq,
            self.size,
            hex::encode(self.root),
            hex::encode(self.chain),
            self.time
        )
        .into_bytes()
    }

    /// One line of JSON (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("invariant: a checkpoint serializes")
    }

    /// Parse one line of JSON.
    pub fn parse(line: &str) -> Result<Checkpoint, String> {
        let cp: Checkpoint = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if cp.v != 1 {
            return Err(format!("unsupported checkpoint version {}", cp.v));
        }
        Ok(cp)
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| serde::de::Error::custom(format!("bad hash {s:?}: {e}")))?;
        Ok(out)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(|e| serde::de::Error::custom(format!("bad hex {s:?}: {e}")))
    }
}

/// The checkpoint signing key. The PKCS#8 bytes stay inside a [`Secret`].
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &hex::encode(self.pair.public_key().as_ref()))
            .finish()
    }
}

impl Signer {
    /// Generate a new key; returns its PKCS#8 (v2) encoding, to be stored 0600.
    pub fn generate_pkcs8() -> Result<Secret<Vec<u8>>, String> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| e.to_string())?;
        Ok(Secret::new(doc.as_ref().to_vec()))
    }

    /// Load a key from its PKCS#8 encoding.
    pub fn from_pkcs8(pkcs8: &Secret<Vec<u8>>) -> Result<Signer, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.expose())
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key ({e})"))?;
        Ok(Signer { pair })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    /// Fill in `cp.sig`.
    pub fn sign(&self, cp: &mut Checkpoint) {
        cp.sig = self.pair.sign(&cp.signed_message()).as_ref().to_vec();
    }
}

/// A checkpoint verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The text of a public key file: `airlock-audit-ed25519 <hex>\n`.
    pub fn to_text(&self) -> String {
        format!("{PUBKEY_TAG} {}\n", hex::encode(self.0))
    }

    /// Parse the text of a public key file.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let mut words = text.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(PUBKEY_TAG), Some(h), None) => {
                let mut k = [0u8; 32];
                hex::decode_to_slice(h, &mut k)
                    .map_err(|e| format!("key is not 32 bytes of hex ({e})"))?;
                Ok(PublicKey(k))
            }
            _ => Err(format!("expected one line `{PUBKEY_TAG} <64 hex digits>`")),
        }
    }

    /// The key as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// True when `cp.sig` is this key's signature over the checkpoint.
    pub fn verifies(&self, cp: &Checkpoint) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&cp.signed_message(), &cp.sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            v: 1,
            tenant: TenantId::default_tenant(),
            seq: 3,
            size: 42,
            root: [7; 32],
            chain: [9; 32],
            time: 1_700_000_000_000_000,
            sig: Vec::new(),
        }
    }

    #[test]
    fn sign_verify_and_every_field_is_covered() {
        let key = Signer::from_pkcs8(&Signer::generate_pkcs8().expect("gen")).expect("load");
        let pk = key.public_key();
        let mut c = cp();
        key.sign(&mut c);
        assert!(pk.verifies(&c));
        let line = c.to_line();
        assert_eq!(Checkpoint::parse(&line).expect("parse"), c);

        let mutations: [fn(&mut Checkpoint); 6] = [
            |c| c.seq += 1,
            |c| c.size -= 1,
            |c| c.root[0] ^= 1,
            |c| c.chain[31] ^= 1,
            |c| c.time += 1,
            |c| c.tenant = TenantId::new("other").expect("id"),
        ];
        for m in mutations {
            let mut bad = c.clone();
            m(&mut bad);
            assert!(!pk.verifies(&bad), "{bad:?}");
        }
        let other = Signer::from_pkcs8(&Signer::generate_pkcs8().expect("gen"))
            .expect("load")
            .public_key();
        assert!(!other.verifies(&c));
    }

    #[test]
    fn public_key_text_round_trips_and_garbage_is_refused() {
        let pk = Signer::from_pkcs8(&Signer::generate_pkcs8().expect("gen"))
            .expect("load")
            .public_key();
        assert_eq!(PublicKey::parse(&pk.to_text()).expect("parse"), pk);
        for bad in [
            "",
            "airlock-audit-ed25519",
            "airlock-audit-ed25519 zz",
            "ssh-ed25519 AAAA",
            "airlock-audit-ed25519 00 00",
        ] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Signer::from_pkcs8(&Secret::new(b"not a key".to_vec())).is_err());
    }

    #[test]
    fn garbage_lines_are_refused() {
        for bad in ["", "{}", "not json", r#"{"v":2}"#] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        let mut line = cp().to_line();
        line.insert_str(1, r#""extra":1,"#);
        assert!(Checkpoint::parse(&line).is_err());
    }
}
