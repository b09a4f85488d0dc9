//! Everything `airlock audit` reads that an attacker with file access (or the
//! sender of a proof) controls: checkpoint lines, public key files, proof
//! documents, stored record bodies, audit paths. None may panic; a proof built
//! from arbitrary bytes must not verify against a real key's checkpoint root
//! unless it is the real one.
#![no_main]

use airlock_audit::{Checkpoint, InclusionProof, PublicKey, canonical, merkle, verify_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = Checkpoint::parse(line);
    }
    let _ = PublicKey::parse(&text);

    // Stored bodies: decoding never panics, and whatever decodes re-encodes
    // canonically and decodes to the same event.
    let _ = canonical::is_canonical(data);
    if let Ok(e) = canonical::decode(data) {
        let body = canonical::encode(&e).expect("a decoded event encodes");
        assert!(canonical::is_canonical(&body));
        assert_eq!(canonical::decode(&body).expect("re-decodes"), e);
    }

    // Proof documents: parse and check against a fixed key.
    if let Ok(p) = serde_json::from_slice::<InclusionProof>(data) {
        let key = PublicKey::parse("airlock-audit-ed25519 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
            .expect("fixed key");
        let _ = verify_proof(&p, &key);
    }

    // Audit paths of any shape, with any index and size.
    if data.len() >= 48 {
        let index = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        let leaf: [u8; 32] = data[16..48].try_into().expect("32 bytes");
        let path: Vec<[u8; 32]> = data[48..].chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        let _ = merkle::root_from_path(index, size, &leaf, &path);
    }
});
