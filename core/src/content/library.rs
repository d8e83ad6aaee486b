//! What a peer holds and can serve: per file, its manifest and which
//! blocks it has, with each block's audit path. The blocks' bytes stay
//! with the platform (IndexedDB in a tab, memory in the simulation): the
//! core asks for one when a query needs it.

use std::collections::BTreeMap;

use super::manifest::{HashName, Manifest};
use super::merkle::{self, Hash};

/// How the audit paths of a file's blocks are known.
#[derive(Debug, Clone)]
enum Paths {
    /// A seed: the whole tree, from which any block's path is read.
    Tree(merkle::Tree),
    /// A download: the path each stored block came with.
    PerBlock(BTreeMap<u32, Vec<Hash>>),
}

#[derive(Debug, Clone)]
pub struct Held {
    pub manifest: Manifest,
    /// Encoded once (DB_CONNECTED carries it).
    pub manifest_bytes: Vec<u8>,
    paths: Paths,
}

impl Held {
    /// Block `block`'s audit path, if we hold the block.
    pub fn path(&self, block: u32) -> Option<Vec<Hash>> {
        match &self.paths {
            Paths::Tree(tree) => {
                ((block as usize) < tree.leaves().len()).then(|| tree.audit_path(block as usize))
            }
            Paths::PerBlock(map) => map.get(&block).cloned(),
        }
    }

    /// Whether we hold block `block`.
    pub fn has(&self, block: u32) -> bool {
        match &self.paths {
            Paths::Tree(tree) => (block as usize) < tree.leaves().len(),
            Paths::PerBlock(map) => map.contains_key(&block),
        }
    }

    pub fn blocks_held(&self) -> u64 {
        match &self.paths {
            Paths::Tree(tree) => tree.leaves().len() as u64,
            Paths::PerBlock(map) => map.len() as u64,
        }
    }

    /// Whole percent of the file's blocks held (100 for an empty file).
    pub fn percent(&self) -> u8 {
        let total = self.manifest.blocks();
        if total == 0 {
            return 100;
        }
        (self.blocks_held() * 100 / total).min(100) as u8
    }
}

#[derive(Debug, Default)]
pub struct Library {
    files: BTreeMap<HashName, Held>,
}

impl Library {
    /// A file we seed: every block, by its leaf hashes.
    pub fn add_seed(&mut self, manifest: Manifest, leaves: Vec<Hash>) -> HashName {
        let h = manifest.hash_name();
        self.files.insert(
            h,
            Held {
                manifest_bytes: manifest.encode(),
                manifest,
                paths: Paths::Tree(merkle::Tree::new(leaves)),
            },
        );
        h
    }

    /// A block of a file being downloaded was verified and stored.
    pub fn add_block(&mut self, manifest: &Manifest, block: u32, path: Vec<Hash>) {
        let held = self
            .files
            .entry(manifest.hash_name())
            .or_insert_with(|| Held {
                manifest_bytes: manifest.encode(),
                manifest: manifest.clone(),
                paths: Paths::PerBlock(BTreeMap::new()),
            });
        if let Paths::PerBlock(map) = &mut held.paths {
            map.insert(block, path);
        }
    }

    pub fn get(&self, h: &HashName) -> Option<&Held> {
        self.files.get(h)
    }

    pub fn remove(&mut self, h: &HashName) -> bool {
        self.files.remove(h).is_some()
    }

    pub fn files(&self) -> impl Iterator<Item = (&HashName, &Held)> {
        self.files.iter()
    }
}
