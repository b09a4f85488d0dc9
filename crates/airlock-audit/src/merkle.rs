//! RFC 6962 Merkle tree hashing and the record hash chain.
//!
//! * leaf hash: `SHA-256(0x00 || record)`;
//! * interior node: `SHA-256(0x01 || left || right)`;
//! * root of the empty tree: `SHA-256("")`;
//! * chain: `chain[i] = SHA-256(0x02 || chain[i-1] || leaf_hash[i])` with
//!   `chain[-1]` = 32 zero bytes. The `0x02` prefix keeps chain hashes apart
//!   from tree hashes.

use aws_lc_rs::digest::{Context, SHA256, digest};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The chain value before the first record.
pub const CHAIN_START: Hash = [0u8; 32];

fn finish(ctx: Context) -> Hash {
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    finish(ctx)
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &buf).as_ref());
    out
}

/// The next chain value: `SHA-256(0x02 || prev || leaf)`.
pub fn chain_hash(prev: &Hash, leaf: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x02;
    buf[1..33].copy_from_slice(prev);
    buf[33..].copy_from_slice(leaf);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &buf).as_ref());
    out
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

/// An append-only Merkle tree kept as its compact frontier: the roots of the
/// perfect subtrees that make up the current size (one per set bit). Appending
/// costs amortised one node hash; the root costs `log2(n)` hashes.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self
                .nodes
                .pop()
                .expect("invariant: one frontier node per set bit of size");
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The RFC 6962 tree head of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The RFC 6962 root of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The RFC 6962 audit path of leaf `index` in the tree of `leaves`, bottom up.
/// `None` when `index` is out of range.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_into(leaves, index, &mut path);
    Some(path)
}

fn path_into(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_into(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        path_into(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// Recompute the root from a leaf hash and its audit path (RFC 9162,
/// section 2.1.3.2). `None` when the path has the wrong shape for
/// `index`/`size`.
pub fn root_from_path(index: u64, size: u64, leaf: &Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 { None } else { Some(r) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Certificate Transparency reference inputs and tree heads for sizes
    // 0..=8 (published with RFC 6962 implementations).
    const INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        INPUTS
            .iter()
            .map(|h| leaf_hash(&hex::decode(h).expect("hex")))
            .collect()
    }

    fn hx(h: &Hash) -> String {
        hex::encode(h)
    }

    #[test]
    fn roots_match_rfc6962_reference_for_every_size() {
        let l = leaves();
        let mut f = Frontier::new();
        assert_eq!(hx(&f.root()), ROOTS[0]);
        for n in 1..=8 {
            f.push(l[n - 1]);
            assert_eq!(hx(&root(&l[..n])), ROOTS[n], "recursive root, size {n}");
            assert_eq!(hx(&f.root()), ROOTS[n], "frontier root, size {n}");
        }
    }

    #[test]
    fn inclusion_paths_match_reference_vectors() {
        let l = leaves();
        let p0: Vec<String> = inclusion_path(&l, 0)
            .expect("in range")
            .iter()
            .map(hx)
            .collect();
        assert_eq!(
            p0,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
        let p5: Vec<String> = inclusion_path(&l, 5)
            .expect("in range")
            .iter()
            .map(hx)
            .collect();
        assert_eq!(
            p5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
    }

    #[test]
    fn every_proof_verifies_and_tampering_fails_for_many_sizes() {
        let all: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=all.len() {
            let l = &all[..n];
            let r = root(l);
            for i in 0..n {
                let path = inclusion_path(l, i).expect("in range");
                let (iu, nu) = (i as u64, n as u64);
                assert_eq!(
                    root_from_path(iu, nu, &l[i], &path),
                    Some(r),
                    "size {n} index {i}"
                );
                // Wrong leaf, wrong index, truncated or extended path: never the root.
                assert_ne!(
                    root_from_path(iu, nu, &leaf_hash(b"forged"), &path),
                    Some(r)
                );
                if n > 1 {
                    assert_ne!(
                        root_from_path((iu + 1) % nu, nu, &l[i], &path),
                        Some(r),
                        "size {n} index {i}"
                    );
                    assert_ne!(
                        root_from_path(iu, nu, &l[i], &path[..path.len() - 1]),
                        Some(r)
                    );
                }
                let mut longer = path.clone();
                longer.push(r);
                assert_eq!(root_from_path(iu, nu, &l[i], &longer), None);
            }
            assert_eq!(inclusion_path(l, n), None);
            assert_eq!(root_from_path(n as u64, n as u64, &l[0], &[]), None);
        }
    }

    #[test]
    fn chain_depends_on_order_and_content() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let ab = chain_hash(&chain_hash(&CHAIN_START, &a), &b);
        let ba = chain_hash(&chain_hash(&CHAIN_START, &b), &a);
        assert_ne!(ab, ba);
        // Domain separation: a chain step is not an interior node.
        assert_ne!(chain_hash(&a, &b), node_hash(&a, &b));
    }
}
