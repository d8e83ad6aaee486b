//! The Merkle tree over a file's blocks: RFC 6962 §2.1 (Certificate
//! Transparency), SHA-256 with domain separation (a leaf is
//! `SHA-256(0x00 | block)`, an inner node `SHA-256(0x01 | left | right)`),
//! and the tree split at the largest power of two below its size, so an odd
//! node is carried up rather than paired with itself (Bitcoin's duplicate
//! leaf trick, CVE-2012-2459, cannot give two block lists one root).
//!
//! A manifest names the root; each block travels with its audit path
//! (RFC 6962 §2.1.1), which a downloader checks before storing the block.
//! Checked against the CT test vectors (roots for 1–8 leaves, two paths).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Most blocks a file may have: 2^24 (1.5 TiB at 98,000-byte blocks), so an
/// audit path is at most 24 hashes.
pub const MAX_BLOCKS: u64 = 1 << 24;
/// Longest audit path for `MAX_BLOCKS`.
pub const MAX_PATH_LEN: usize = 24;

/// `SHA-256(0x00 | data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 | left | right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root over leaf hashes (RFC 6962 MTH); the empty tree's root is
/// SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (l, r) = leaves.split_at(k);
            node_hash(&root(l), &root(r))
        }
    }
}

/// The audit path of leaf `index` (RFC 6962 PATH), nearest sibling first.
/// Empty when `index` is outside the tree.
pub fn audit_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    if index >= leaves.len() {
        return path;
    }
    collect_path(leaves, index, &mut path);
    path
}

fn collect_path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    let (l, r) = leaves.split_at(k);
    if index < k {
        collect_path(l, index, out);
        out.push(root(r));
    } else {
        collect_path(r, index - k, out);
        out.push(root(l));
    }
}

/// A whole tree kept level by level, so that a seed serving blocks gets
/// each audit path in O(log n) instead of rehashing the file's leaves
/// (`audit_path` is O(n): 43,000 hashes per block of a 4 GB file). Built
/// bottom-up, an unpaired last node carried up unchanged: the same tree
/// as RFC 6962's split at the largest power of two (checked against
/// `root` and `audit_path` in the tests).
#[derive(Debug, Clone)]
pub struct Tree {
    /// Leaves first, the root last.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    // The unpaired last node (chunks are never empty).
                    _ => pair.first().copied().unwrap_or_default(),
                })
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The root (RFC 6962 MTH); SHA-256 of nothing when empty.
    pub fn root(&self) -> Hash {
        match self.levels.last().map(Vec::as_slice) {
            Some([top]) => *top,
            _ => Sha256::digest([]).into(),
        }
    }

    /// The audit path of leaf `index`, nearest sibling first; empty when
    /// `index` is outside the tree.
    pub fn audit_path(&self, index: usize) -> Vec<Hash> {
        let mut path = Vec::new();
        if index >= self.leaves().len() {
            return path;
        }
        let mut i = index;
        let below_root = self.levels.len().saturating_sub(1);
        for level in self.levels.iter().take(below_root) {
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i /= 2;
        }
        path
    }
}

/// Whether `leaf` is leaf `index` of a tree of `size` leaves with `root`,
/// by its audit path (RFC 9162 §2.1.3.2's verification, which RFC 6962's
/// paths satisfy).
pub fn verify(root_hash: &Hash, size: u64, index: u64, leaf: &Hash, path: &[Hash]) -> bool {
    if index >= size || path.len() > MAX_PATH_LEN {
        return false;
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            // Climb past the levels where this node had no right sibling.
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && bool::from(subtle::ConstantTimeEq::ct_eq(&r[..], &root_hash[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Certificate Transparency test data (RFC 6962 trees): eight leaves
    // and the root of the first n of them, n = 1..8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
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
        LEAVES
            .iter()
            .map(|h| leaf_hash(&hex::decode(h).unwrap()))
            .collect()
    }

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn roots_match_the_ct_vectors() {
        let l = leaves();
        for n in 1..=8 {
            assert_eq!(hex::encode(root(&l[..n])), ROOTS[n - 1], "{n} leaves");
        }
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn paths_match_the_ct_vectors() {
        let l = leaves();
        assert_eq!(
            audit_path(&l, 0),
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            audit_path(&l, 5),
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
    }

    #[test]
    fn every_leaf_verifies_in_every_tree_size_and_nothing_else_does() {
        let many: Vec<Hash> = (0..37u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=many.len() {
            let tree = &many[..n];
            let r = root(tree);
            for i in 0..n {
                let path = audit_path(tree, i);
                assert!(verify(&r, n as u64, i as u64, &tree[i], &path), "{i}/{n}");
                // Another leaf, another index, a cut or longer path: no. (A
                // root does not commit to the tree's size: the manifest,
                // which is signed, names it.)
                let other = (i + 1) % n;
                if other != i {
                    assert!(!verify(&r, n as u64, i as u64, &tree[other], &path));
                    assert!(!verify(&r, n as u64, other as u64, &tree[i], &path));
                }
                if let Some((_, shorter)) = path.split_last() {
                    assert!(!verify(&r, n as u64, i as u64, &tree[i], shorter));
                }
                let mut longer = path.clone();
                longer.push([0; 32]);
                assert!(!verify(&r, n as u64, i as u64, &tree[i], &longer));
            }
            assert!(!verify(&r, n as u64, n as u64, &tree[0], &[]));
        }
    }

    #[test]
    fn the_kept_tree_gives_rfc6962_roots_and_paths() {
        for n in 0..70usize {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let tree = Tree::new(leaves.clone());
            assert_eq!(tree.root(), root(&leaves), "root of {n}");
            for i in 0..=n {
                assert_eq!(
                    tree.audit_path(i),
                    audit_path(&leaves, i),
                    "path {i} of {n}"
                );
            }
        }
    }
}
