//! Shared files in IndexedDB (through rexie): what a tab seeds or has
//! downloaded by hash_name, kept across reloads (docs/PROTOCOL.md "ORDB").
//!
//! - `files`: one record per file, keyed by hash_name (hex): the manifest,
//!   its name, size and type, whether this tab seeded it or downloads it,
//!   whether it is complete, and for a seed the leaf hashes (a reseed
//!   needs them and nothing else).
//! - `blocks`: the verified blocks, keyed `[file id, block]`.
//! - `paths`: each downloaded block's audit path, same key, so a resumed
//!   download (and this tab's ORDB) has them without reading the blocks.
//!
//! Only verified blocks are ever written: the core hands them over after
//! checking them against the Merkle root.

use js_sys::{Array, Object, Uint8Array};
use peersm_core::content::merkle::Hash;
use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};

use super::js::{get, js_error, set};

const DB_NAME: &str = "peersm-files";
const FILES: &str = "files";
const BLOCKS: &str = "blocks";
const PATHS: &str = "paths";

fn db_error(e: rexie::Error) -> JsValue {
    js_error(&format!("IndexedDB: {e}"))
}

fn key(id: &str, block: u32) -> JsValue {
    Array::of2(&JsValue::from_str(id), &JsValue::from(block)).into()
}

fn range(id: &str) -> Result<KeyRange, JsValue> {
    KeyRange::bound(&key(id, 0), &key(id, u32::MAX), None, None)
        .map_err(|e| js_error(&format!("IndexedDB key range: {e}")))
}

/// Whether the tab made the file or fetches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Seed,
    Download,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Seed => "seed",
            Role::Download => "download",
        }
    }
}

/// One file's record in `files`.
#[derive(Clone, Debug)]
pub(crate) struct FileRecord {
    pub(crate) hash_name: String,
    /// The key of its blocks.
    pub(crate) file_id: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) mime: String,
    pub(crate) role: Role,
    pub(crate) complete: bool,
    pub(crate) manifest: Vec<u8>,
    /// A seed's leaf hashes, in block order.
    pub(crate) leaves: Vec<Hash>,
    /// When it was seeded or first asked for (ms since the epoch).
    pub(crate) added: f64,
}

fn hashes_to_bytes(hashes: &[Hash]) -> Uint8Array {
    Uint8Array::from(hashes.concat().as_slice())
}

fn hashes_from_bytes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect()
}

fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    v.dyn_ref::<Uint8Array>().map(|a| a.to_vec())
}

impl FileRecord {
    fn to_js(&self) -> Result<JsValue, JsValue> {
        let o = Object::new();
        set(&o, "hashName", &JsValue::from_str(&self.hash_name))?;
        set(&o, "fileId", &JsValue::from_str(&self.file_id))?;
        set(&o, "name", &JsValue::from_str(&self.name))?;
        set(&o, "size", &JsValue::from(self.size as f64))?;
        set(&o, "type", &JsValue::from_str(&self.mime))?;
        set(&o, "role", &JsValue::from_str(self.role.as_str()))?;
        set(&o, "complete", &JsValue::from_bool(self.complete))?;
        set(&o, "manifest", &Uint8Array::from(self.manifest.as_slice()))?;
        set(&o, "leaves", &hashes_to_bytes(&self.leaves))?;
        set(&o, "added", &JsValue::from(self.added))?;
        Ok(o.into())
    }

    /// A stored record; `None` for one this version cannot read.
    fn from_js(v: &JsValue) -> Option<FileRecord> {
        let s = |k: &str| get(v, k).ok().and_then(|x| x.as_string());
        let role = match s("role")?.as_str() {
            "seed" => Role::Seed,
            "download" => Role::Download,
            _ => return None,
        };
        Some(FileRecord {
            hash_name: s("hashName")?,
            file_id: s("fileId")?,
            name: s("name").unwrap_or_default(),
            size: get(v, "size").ok()?.as_f64()? as u64,
            mime: s("type").unwrap_or_default(),
            role,
            complete: get(v, "complete").ok()?.as_bool()?,
            manifest: bytes_of(&get(v, "manifest").ok()?)?,
            leaves: hashes_from_bytes(&bytes_of(&get(v, "leaves").ok()?).unwrap_or_default()),
            added: get(v, "added").ok()?.as_f64().unwrap_or(0.0),
        })
    }
}

pub(crate) struct FileStore {
    db: Rexie,
}

impl FileStore {
    pub(crate) async fn open() -> Result<FileStore, JsValue> {
        let db = Rexie::builder(DB_NAME)
            .version(1)
            .add_object_store(ObjectStore::new(FILES))
            .add_object_store(ObjectStore::new(BLOCKS))
            .add_object_store(ObjectStore::new(PATHS))
            .build()
            .await
            .map_err(db_error)?;
        Ok(FileStore { db })
    }

    pub(crate) async fn put_file(&self, record: &FileRecord) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction(&[FILES], TransactionMode::ReadWrite)
            .map_err(db_error)?;
        let store = tx.store(FILES).map_err(db_error)?;
        store
            .put(
                &record.to_js()?,
                Some(&JsValue::from_str(&record.hash_name)),
            )
            .await
            .map_err(db_error)?;
        tx.done().await.map_err(db_error)?;
        Ok(())
    }

    /// Every file record this version can read, oldest first.
    pub(crate) async fn files(&self) -> Result<Vec<FileRecord>, JsValue> {
        let tx = self
            .db
            .transaction(&[FILES], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(FILES).map_err(db_error)?;
        let values = store.get_all(None, None).await.map_err(db_error)?;
        let mut out: Vec<FileRecord> = values.iter().filter_map(FileRecord::from_js).collect();
        out.sort_by(|a, b| a.added.total_cmp(&b.added));
        Ok(out)
    }

    pub(crate) async fn file(&self, hash_name: &str) -> Result<Option<FileRecord>, JsValue> {
        let tx = self
            .db
            .transaction(&[FILES], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(FILES).map_err(db_error)?;
        let value = store
            .get(JsValue::from_str(hash_name))
            .await
            .map_err(db_error)?;
        Ok(value.as_ref().and_then(FileRecord::from_js))
    }

    /// Stores a verified block, with its audit path when it has one.
    pub(crate) async fn put_block(
        &self,
        id: &str,
        block: u32,
        data: &[u8],
        path: Option<&[Hash]>,
    ) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction(&[BLOCKS, PATHS], TransactionMode::ReadWrite)
            .map_err(db_error)?;
        let blocks = tx.store(BLOCKS).map_err(db_error)?;
        blocks
            .put(&Uint8Array::from(data).into(), Some(&key(id, block)))
            .await
            .map_err(db_error)?;
        if let Some(path) = path {
            let paths = tx.store(PATHS).map_err(db_error)?;
            paths
                .put(&hashes_to_bytes(path).into(), Some(&key(id, block)))
                .await
                .map_err(db_error)?;
        }
        tx.done().await.map_err(db_error)?;
        Ok(())
    }

    pub(crate) async fn block(&self, id: &str, block: u32) -> Result<Option<Vec<u8>>, JsValue> {
        let tx = self
            .db
            .transaction(&[BLOCKS], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(BLOCKS).map_err(db_error)?;
        let value = store.get(key(id, block)).await.map_err(db_error)?;
        Ok(value.as_ref().and_then(bytes_of))
    }

    /// The blocks of a download stored so far, with their audit paths.
    pub(crate) async fn paths(&self, id: &str) -> Result<Vec<(u32, Vec<Hash>)>, JsValue> {
        let tx = self
            .db
            .transaction(&[PATHS], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(PATHS).map_err(db_error)?;
        let keys = store
            .get_all_keys(Some(range(id)?), None)
            .await
            .map_err(db_error)?;
        let values = store
            .get_all(Some(range(id)?), None)
            .await
            .map_err(db_error)?;
        Ok(keys
            .iter()
            .zip(values.iter())
            .filter_map(|(k, v)| {
                let block = Array::from(k).get(1).as_f64()? as u32;
                Some((block, hashes_from_bytes(&bytes_of(v)?)))
            })
            .collect())
    }

    /// Every block of `id`, in order (the whole file once complete).
    pub(crate) async fn blocks(&self, id: &str) -> Result<Array, JsValue> {
        let tx = self
            .db
            .transaction(&[BLOCKS], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(BLOCKS).map_err(db_error)?;
        let values = store
            .get_all(Some(range(id)?), None)
            .await
            .map_err(db_error)?;
        Ok(values.into_iter().collect())
    }

    /// Deletes a file: its record, blocks and paths.
    pub(crate) async fn delete(&self, hash_name: &str, id: &str) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction(&[FILES, BLOCKS, PATHS], TransactionMode::ReadWrite)
            .map_err(db_error)?;
        tx.store(FILES)
            .map_err(db_error)?
            .delete(JsValue::from_str(hash_name))
            .await
            .map_err(db_error)?;
        for name in [BLOCKS, PATHS] {
            tx.store(name)
                .map_err(db_error)?
                .delete(range(id)?.into())
                .await
                .map_err(db_error)?;
        }
        tx.done().await.map_err(db_error)?;
        Ok(())
    }
}
