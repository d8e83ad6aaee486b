//! Files shared by hash_name, in the page (docs/PROTOCOL.md "ORDB"):
//! `peer.seed` hashes a File or Blob block by block into IndexedDB and has
//! the core sign its manifest; `peer.download` has the core fetch it
//! through circuits to ORDBs and stores each verified block; `peer.stored`
//! and `peer.reseed` bring files back after a reload. The driver answers
//! the core's block reads and writes here (`read_block`, `store_block`).
//! The protocol, the checks and the scheduling are the core's.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Uint8Array};
use peersm_core::content::merkle::{leaf_hash, Hash};
use peersm_core::content::{HashName, Manifest, BLOCK_LEN};
use peersm_core::peer::tab::{DownloadOptions, Downloaded, Outcome, SharedFile};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use futures_channel::oneshot;

use super::driver::{input, now, pump, Shared};
use super::files::{FileRecord, FileStore, Role};
use super::js::{get, global_property, js_error, set};
use super::log;
use super::stream::{PlayerEvent, PlayerTx};

/// Hashing and storing a seeded file reports progress this often (bytes).
const SEED_PROGRESS_EVERY: u64 = 1 << 20;

/// A download in progress, as the driver sees it.
pub(crate) struct DownloadSink {
    pub(crate) file_id: String,
    pub(crate) on_progress: Option<Function>,
    /// The record, once the manifest is known.
    pub(crate) record: Option<FileRecord>,
    /// Blocks fetched and stored by this download (not those it resumed
    /// with).
    pub(crate) fetched: u32,
    /// Blocks it resumed with.
    pub(crate) had: Vec<u32>,
    /// A player following the download (`peer.stream`).
    pub(crate) player: Option<PlayerTx>,
}

pub(crate) fn store(shared: &Shared, what: &str) -> Result<Rc<FileStore>, JsValue> {
    shared.borrow().files.clone().ok_or_else(|| {
        js_error(&format!(
            "{what}: this browser gave the page no IndexedDB, where shared files are kept"
        ))
    })
}

fn random_id() -> String {
    super::fetch::new_body_id()
}

/// The page URL that opens this page and downloads `hash_name`: the
/// page's origin and path (not its query: that holds this tab's options).
pub(crate) fn link_for(hash_name: &str) -> String {
    let location = global_property("location").unwrap_or(JsValue::UNDEFINED);
    let part = |k: &str| {
        get(&location, k)
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    format!("{}{}#{hash_name}", part("origin"), part("pathname"))
}

/// A hash_name (40 hex characters), or a link ending in `#<hash_name>`.
pub(crate) fn parse_hash_name(what: &str, s: &str) -> Result<HashName, JsValue> {
    let s = s.trim();
    let hex = s.rsplit_once('#').map_or(s, |(_, h)| h).trim();
    HashName::from_hex(&hex.to_ascii_lowercase()).ok_or_else(|| {
        js_error(&format!(
            "{what}: {s:?} is neither a hash_name (40 hex characters) nor a Peersm link"
        ))
    })
}

fn seeded(file: &SharedFile) -> Result<JsValue, JsValue> {
    let o = Object::new();
    let h = file.hash_name.to_hex();
    set(&o, "hashName", &JsValue::from_str(&h))?;
    set(&o, "link", &JsValue::from_str(&link_for(&h)))?;
    set(&o, "size", &JsValue::from(file.size as f64))?;
    set(&o, "name", &JsValue::from_str(&file.name))?;
    set(&o, "type", &JsValue::from_str(&file.mime))?;
    Ok(o.into())
}

fn call_progress(cb: &Function, fields: &[(&str, f64)]) {
    let o = Object::new();
    for (k, v) in fields {
        let _ = set(&o, k, &JsValue::from(*v));
    }
    if let Err(e) = cb.call1(&JsValue::NULL, &o) {
        log::warn(&format!("onProgress threw: {e:?}"));
    }
}

// --- seeding ---

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SeedOptions {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    mime: Option<String>,
}

/// Cuts `blob` into blocks, hashes and stores each, then seeds it.
pub(crate) async fn seed(
    shared: &Shared,
    blob: web_sys::Blob,
    options: SeedOptions,
    on_progress: Option<Function>,
) -> Result<JsValue, JsValue> {
    let files = store(shared, "seed")?;
    let size = blob.size() as u64;
    if size == 0 {
        return Err(js_error("seed: the file is empty"));
    }
    let name = options
        .name
        .or_else(|| get(&blob, "name").ok().and_then(|n| n.as_string()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "file".into());
    let mime = options
        .mime
        .unwrap_or_else(|| blob.type_())
        .trim()
        .to_string();
    let mime = if mime.is_empty() {
        "application/octet-stream".to_string()
    } else {
        mime
    };
    let file_id = random_id();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut at = 0u64;
    let mut reported = 0u64;
    let mut seeded_hash: Option<HashName> = None;
    let result = async {
        while at < size {
            let end = (at + u64::from(BLOCK_LEN)).min(size);
            let slice = blob.slice_with_f64_and_f64(at as f64, end as f64)?;
            let buf = JsFuture::from(slice.array_buffer())
                .await
                .map_err(|e| js_error(&format!("seed: the file could not be read: {e:?}")))?;
            let data = Uint8Array::new(&buf).to_vec();
            if data.len() as u64 != end - at {
                return Err(js_error("seed: the file changed while it was read"));
            }
            leaves.push(leaf_hash(&data));
            files
                .put_block(&file_id, leaves.len() as u32 - 1, &data, None)
                .await?;
            at = end;
            if let Some(cb) = &on_progress {
                if at - reported >= SEED_PROGRESS_EVERY || at == size {
                    reported = at;
                    call_progress(cb, &[("hashed", at as f64), ("total", size as f64)]);
                }
            }
        }
        let file = {
            let mut d = shared.borrow_mut();
            d.tab
                .seed(size, leaves.clone(), &mime, &name, now())
                .map_err(|e| js_error(&format!("seed: {e}")))?
        };
        // Served from now on (queries may come before the record is kept).
        shared
            .borrow_mut()
            .file_ids
            .insert(file.hash_name, file_id.clone());
        seeded_hash = Some(file.hash_name);
        let record = FileRecord {
            hash_name: file.hash_name.to_hex(),
            file_id: file_id.clone(),
            name: file.name.clone(),
            size,
            mime: file.mime.clone(),
            role: Role::Seed,
            complete: true,
            manifest: file.manifest.clone(),
            leaves,
            added: js_sys::Date::now(),
        };
        files.put_file(&record).await?;
        pump(shared);
        Ok(file)
    }
    .await;
    match result {
        Ok(file) => seeded(&file),
        Err(e) => {
            // Nothing half-stored stays behind, and nothing is offered.
            if let Some(h) = seeded_hash {
                let mut d = shared.borrow_mut();
                d.tab.unshare(&h);
                d.file_ids.remove(&h);
            }
            let _ = files.delete("", &file_id).await;
            Err(e)
        }
    }
}

/// The files kept in IndexedDB: `[{ hashName, link, name, size, type,
/// role, complete, blocks, shared }]` (`blocks`: how many are kept;
/// `shared`: served by this session now).
pub(crate) async fn stored(shared: &Shared) -> Result<Array, JsValue> {
    let files = store(shared, "stored")?;
    let out = Array::new();
    for r in files.files().await? {
        let o = Object::new();
        set(&o, "hashName", &JsValue::from_str(&r.hash_name))?;
        set(&o, "link", &JsValue::from_str(&link_for(&r.hash_name)))?;
        set(&o, "name", &JsValue::from_str(&r.name))?;
        set(&o, "size", &JsValue::from(r.size as f64))?;
        set(&o, "type", &JsValue::from_str(&r.mime))?;
        set(&o, "role", &JsValue::from_str(r.role.as_str()))?;
        set(&o, "complete", &JsValue::from_bool(r.complete))?;
        let blocks = match r.role {
            Role::Seed => r.leaves.len(),
            Role::Download => files.paths(&r.file_id).await?.len(),
        };
        set(&o, "blocks", &JsValue::from(blocks as u32))?;
        let serving = HashName::from_hex(&r.hash_name)
            .is_some_and(|h| shared.borrow().file_ids.contains_key(&h));
        set(&o, "shared", &JsValue::from_bool(serving))?;
        out.push(&o);
    }
    Ok(out)
}

/// Serves again a file kept from an earlier session: a seed from its leaf
/// hashes, a download (whole or partial) from its blocks' audit paths.
pub(crate) async fn reseed(shared: &Shared, hash_name: &str) -> Result<JsValue, JsValue> {
    let files = store(shared, "reseed")?;
    let h = parse_hash_name("reseed", hash_name)?;
    let r = files
        .file(&h.to_hex())
        .await?
        .ok_or_else(|| js_error(&format!("reseed: no file {} is kept here", h.to_hex())))?;
    let file = match r.role {
        Role::Seed => shared
            .borrow_mut()
            .tab
            .reseed(&r.manifest, r.leaves.clone(), now()),
        Role::Download => {
            let have = files.paths(&r.file_id).await?;
            shared.borrow_mut().tab.restore(&r.manifest, have, now())
        }
    }
    .map_err(|e| js_error(&format!("reseed: {e}")))?;
    shared.borrow_mut().file_ids.insert(h, r.file_id.clone());
    pump(shared);
    seeded(&file)
}

// --- downloading ---

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DownloadOptionsJs {
    /// Tabs per circuit, the ORDB last (default 2).
    #[serde(default)]
    hops: Option<u32>,
    /// The largest file to accept, bytes (default 4 GiB).
    #[serde(default)]
    max_size: Option<f64>,
}

impl DownloadOptionsJs {
    pub(crate) fn hops(&self) -> Option<u32> {
        self.hops
    }
}

/// A file downloaded (or kept) by hash_name; its blocks are in IndexedDB.
#[wasm_bindgen]
pub struct SharedDownload {
    hash_name: String,
    name: String,
    mime: String,
    size: f64,
    ms: f64,
    circuits: u32,
    sources: Vec<String>,
    stats: Vec<(&'static str, f64)>,
    fetched: u32,
    file_id: String,
    files: Rc<FileStore>,
    shared: Shared,
}

#[wasm_bindgen]
impl SharedDownload {
    #[wasm_bindgen(getter, js_name = hashName)]
    pub fn hash_name(&self) -> String {
        self.hash_name.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn link(&self) -> String {
        link_for(&self.hash_name)
    }

    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The MIME type the seeder gave.
    #[wasm_bindgen(getter, js_name = "type")]
    pub fn mime(&self) -> String {
        self.mime.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.size
    }

    /// How long the download took (0 when the file was already here).
    #[wasm_bindgen(getter)]
    pub fn ms(&self) -> f64 {
        self.ms
    }

    /// Circuits opened to ORDBs.
    #[wasm_bindgen(getter)]
    pub fn circuits(&self) -> u32 {
        self.circuits
    }

    /// The ORDBs those circuits ended at (peer IDs); each may have relayed
    /// the queries further.
    #[wasm_bindgen(getter)]
    pub fn sources(&self) -> Array {
        self.sources.iter().map(|s| JsValue::from_str(s)).collect()
    }

    /// Blocks this download fetched (a resumed one fetches only those it
    /// did not have).
    #[wasm_bindgen(getter)]
    pub fn fetched(&self) -> u32 {
        self.fetched
    }

    /// `{ blocksBad, bytesWasted, sourcesDropped, unavailable }`.
    #[wasm_bindgen(getter)]
    pub fn stats(&self) -> Result<Object, JsValue> {
        let o = Object::new();
        for (k, v) in &self.stats {
            set(&o, k, &JsValue::from(*v))?;
        }
        Ok(o)
    }

    pub async fn blob(&self) -> Result<web_sys::Blob, JsValue> {
        let blocks = self.files.blocks(&self.file_id).await?;
        let len: f64 = blocks
            .iter()
            .filter_map(|b| b.dyn_into::<Uint8Array>().ok())
            .map(|b| f64::from(b.length()))
            .sum();
        if len != self.size {
            return Err(js_error("blob: blocks of this file are missing"));
        }
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(&self.mime);
        web_sys::Blob::new_with_u8_array_sequence_and_options(&blocks, &options)
    }

    pub async fn bytes(&self) -> Result<Uint8Array, JsValue> {
        let blocks = self.files.blocks(&self.file_id).await?;
        let out = Uint8Array::new_with_length(self.size as u32);
        let mut at = 0u32;
        for b in blocks.iter() {
            let b: Uint8Array = b.dyn_into()?;
            if at + b.length() > out.length() {
                return Err(js_error("bytes: the stored blocks overrun the file"));
            }
            out.set(&b, at);
            at += b.length();
        }
        if at != out.length() {
            return Err(js_error("bytes: blocks of this file are missing"));
        }
        Ok(out)
    }

    /// Stops serving the file and deletes it from IndexedDB.
    pub async fn remove(&self) -> Result<(), JsValue> {
        forget(&self.shared, &self.hash_name).await
    }
}

async fn remove(shared: &Shared, files: &FileStore, hash: &str, id: &str) -> Result<(), JsValue> {
    if let Some(h) = HashName::from_hex(hash) {
        let mut d = shared.borrow_mut();
        d.tab.unshare(&h);
        d.file_ids.remove(&h);
    }
    files.delete(hash, id).await
}

/// Stops sharing `hash_name` and deletes it from IndexedDB.
pub(crate) async fn forget(shared: &Shared, hash_name: &str) -> Result<(), JsValue> {
    let files = store(shared, "remove")?;
    let h = parse_hash_name("remove", hash_name)?;
    if shared.borrow().busy.contains(&h) {
        return Err(js_error(&format!(
            "remove: {} is being downloaded; wait for it to end",
            h.to_hex()
        )));
    }
    match files.file(&h.to_hex()).await? {
        Some(r) => remove(shared, &files, &r.hash_name, &r.file_id).await,
        None => Err(js_error(&format!(
            "remove: no file {} is kept here",
            h.to_hex()
        ))),
    }
}

fn handle(
    shared: &Shared,
    files: Rc<FileStore>,
    r: &FileRecord,
    done: Option<&Downloaded>,
) -> SharedDownload {
    let stats = done.map(|d| d.stats).unwrap_or_default();
    SharedDownload {
        hash_name: r.hash_name.clone(),
        name: r.name.clone(),
        mime: r.mime.clone(),
        size: r.size as f64,
        ms: done.map_or(0.0, |d| d.ms as f64),
        circuits: done.map_or(0, |d| d.circuits as u32),
        sources: done.map_or_else(Vec::new, |d| d.sources.iter().map(|p| p.to_hex()).collect()),
        stats: vec![
            ("blocksBad", stats.blocks_bad as f64),
            ("bytesWasted", stats.bytes_wasted as f64),
            ("sourcesDropped", stats.sources_dropped as f64),
            ("unavailable", stats.unavailable as f64),
        ],
        fetched: 0,
        file_id: r.file_id.clone(),
        files,
        shared: shared.clone(),
    }
}

/// Downloads `hash_name` through ORDBs, or resumes it from the blocks
/// IndexedDB holds; a file already complete here resolves at once.
pub(crate) async fn download(
    shared: &Shared,
    target: &str,
    options: DownloadOptionsJs,
    on_progress: Option<Function>,
    player: Option<PlayerTx>,
) -> Result<SharedDownload, JsValue> {
    let files = store(shared, "download")?;
    let h = parse_hash_name("download", target)?;
    if !shared.borrow_mut().busy.insert(h) {
        return Err(js_error(&format!(
            "download: {} is already being downloaded",
            h.to_hex()
        )));
    }
    // Other tabs of this browser profile share the store: one at a time.
    let lock = match super::locks::try_lock(&format!("peersm-file-{}", h.to_hex())).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            shared.borrow_mut().busy.remove(&h);
            return Err(js_error(&format!(
                "download: {} is being downloaded in another tab of this browser",
                h.to_hex()
            )));
        }
        Err(e) => {
            shared.borrow_mut().busy.remove(&h);
            return Err(e);
        }
    };
    let result = download_once(shared, files, h, options, on_progress, player).await;
    drop(lock);
    shared.borrow_mut().busy.remove(&h);
    result
}

async fn download_once(
    shared: &Shared,
    files: Rc<FileStore>,
    h: HashName,
    options: DownloadOptionsJs,
    on_progress: Option<Function>,
    player: Option<PlayerTx>,
) -> Result<SharedDownload, JsValue> {
    let kept = files.file(&h.to_hex()).await?;
    if let Some(r) = kept.as_ref().filter(|r| r.complete) {
        if !shared.borrow().file_ids.contains_key(&h) {
            reseed(shared, &r.hash_name).await?;
        }
        if let Some(p) = &player {
            let block_len = block_len_of(&r.manifest);
            let blocks = r.size.div_ceil(u64::from(block_len)) as u32;
            let _ = p.unbounded_send(PlayerEvent::File {
                op: None,
                file_id: r.file_id.clone(),
                size: r.size,
                block_len,
                mime: r.mime.clone(),
                have: (0..blocks).collect(),
            });
        }
        return Ok(handle(shared, files, r, None));
    }
    let mut core_options = DownloadOptions {
        hops: options.hops.map(|h| h as usize),
        max_size: options.max_size.map(|m| m.max(0.0) as u64),
        ..Default::default()
    };
    let file_id = match &kept {
        Some(r) => {
            core_options.manifest = Some(r.manifest.clone());
            core_options.have = files.paths(&r.file_id).await?;
            log::info(&format!(
                "download {}: resuming with {} blocks kept",
                r.hash_name,
                core_options.have.len()
            ));
            r.file_id.clone()
        }
        None => random_id(),
    };
    let sink = DownloadSink {
        file_id,
        on_progress,
        record: kept.clone(),
        fetched: 0,
        had: core_options.have.iter().map(|(b, _)| *b).collect(),
        player,
    };
    let (tx, rx) = oneshot::channel();
    log::info(&format!("download {}: asking ORDBs", h.to_hex()));
    let op = {
        let mut d = shared.borrow_mut();
        let op = d.tab.download(h, core_options, now());
        d.waiters.insert(op, tx);
        d.downloads.insert(op, sink);
        op
    };
    pump(shared);
    let outcome = rx.await.ok();
    let sink = shared.borrow_mut().downloads.remove(&op);
    let done = match outcome {
        Some(Outcome::Downloaded(r)) => r.map_err(|e| js_error(&format!("download: {e}")))?,
        _ => return Err(js_error("download: the peer stopped")),
    };
    let (fetched, record) = sink.map_or((0, None), |s| (s.fetched, s.record));
    // Our own record (its blocks are ours): another tab of this profile
    // may have written one for the same file meanwhile.
    let mut record = record.ok_or_else(|| js_error("download: the file's manifest never came"))?;
    record.complete = true;
    files.put_file(&record).await?;
    let mut result = handle(shared, files, &record, Some(&done));
    result.fetched = fetched;
    Ok(result)
}

/// The block length a file's manifest names (its seeder chose it).
fn block_len_of(manifest: &[u8]) -> u32 {
    Manifest::decode(manifest).map_or(BLOCK_LEN, |m| m.block_len)
}

// --- the driver's side: the core's block reads and writes ---

/// The core's ORDB needs a block of a file this tab shares.
pub(crate) fn read_block(shared: &Shared, request: u64, hash_name: HashName, block: u32) {
    let (files, id, tamper) = {
        let d = shared.borrow();
        (
            d.files.clone(),
            d.file_ids.get(&hash_name).cloned(),
            d.tamper,
        )
    };
    let (Some(files), Some(id)) = (files, id) else {
        return input(shared, |tab, now| {
            tab.handle_block(request, Err("not kept in this page".into()), now)
        });
    };
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let data = match files.block(&id, block).await {
            Ok(Some(mut data)) => {
                if tamper {
                    // Tests only (`Peer.start({ tamper: true })`): serve
                    // corrupted blocks, which downloaders must catch.
                    if let Some(b) = data.get_mut(7) {
                        *b ^= 0x55;
                    }
                }
                Ok(data)
            }
            Ok(None) => Err("block not stored".to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        if let Some(shared) = weak.upgrade() {
            input(&shared, |tab, now| tab.handle_block(request, data, now));
        }
    });
}

/// A verified block of download `op`: stored, then the core goes on.
pub(crate) fn store_block(shared: &Shared, op: u64, block: u32, data: Vec<u8>, path: Vec<Hash>) {
    let target = {
        let d = shared.borrow();
        d.downloads
            .get(&op)
            .map(|s| s.file_id.clone())
            .zip(d.files.clone())
    };
    let Some((id, files)) = target else { return };
    // A player takes the verified block at once, from memory: it need not
    // wait for IndexedDB to write it and read it back.
    let data = Rc::new(data);
    if let Some(p) = shared
        .borrow()
        .downloads
        .get(&op)
        .and_then(|s| s.player.as_ref())
    {
        let _ = p.unbounded_send(PlayerEvent::Verified(block, data.clone()));
    }
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        match files.put_block(&id, block, &data, Some(&path)).await {
            Ok(()) => {
                if let Some(shared) = weak.upgrade() {
                    if let Some(s) = shared.borrow_mut().downloads.get_mut(&op) {
                        s.fetched += 1;
                        if let Some(p) = &s.player {
                            let _ = p.unbounded_send(PlayerEvent::Stored(block));
                        }
                    }
                    input(&shared, |tab, now| tab.handle_block_stored(op, block, now));
                }
            }
            // Not stored (the profile's storage is full, say): the download
            // ends with the reason rather than wait for it forever.
            Err(e) => {
                if let Some(shared) = weak.upgrade() {
                    let why = e.as_string().unwrap_or_else(|| format!("{e:?}"));
                    input(&shared, |tab, now| {
                        tab.handle_block_store_failed(op, block, &why, now)
                    });
                }
            }
        }
    });
}

/// Download `op` has its manifest: its record is written, and its blocks
/// can be served from now on.
pub(crate) fn manifest_known(shared: &Shared, op: u64, file: SharedFile) {
    let record = {
        let mut d = shared.borrow_mut();
        let Some(sink) = d.downloads.get_mut(&op) else {
            return;
        };
        let record = FileRecord {
            hash_name: file.hash_name.to_hex(),
            file_id: sink.file_id.clone(),
            name: file.name.clone(),
            size: file.size,
            mime: file.mime.clone(),
            role: Role::Download,
            complete: false,
            manifest: file.manifest.clone(),
            leaves: Vec::new(),
            added: js_sys::Date::now(),
        };
        sink.record = Some(record.clone());
        if let Some(p) = &sink.player {
            let _ = p.unbounded_send(PlayerEvent::File {
                op: Some(op),
                file_id: sink.file_id.clone(),
                size: file.size,
                block_len: block_len_of(&file.manifest),
                mime: file.mime.clone(),
                have: sink.had.clone(),
            });
        }
        let id = sink.file_id.clone();
        d.file_ids.insert(file.hash_name, id);
        d.files.clone().map(|f| (f, record))
    };
    if let Some((files, record)) = record {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = files.put_file(&record).await {
                log::warn(&format!("keeping the download's record failed: {e:?}"));
            }
        });
    }
}

pub(crate) fn progress(
    shared: &Shared,
    op: u64,
    received: u64,
    total: Option<u64>,
    speed: u64,
    circuits: usize,
) {
    let cb = shared
        .borrow()
        .downloads
        .get(&op)
        .and_then(|s| s.on_progress.clone());
    let Some(cb) = cb else { return };
    let o = Object::new();
    let _ = set(&o, "received", &JsValue::from(received as f64));
    let total = total.map_or(JsValue::NULL, |t| JsValue::from(t as f64));
    let _ = set(&o, "total", &total);
    let _ = set(&o, "speed", &JsValue::from(speed as f64));
    let _ = set(&o, "circuits", &JsValue::from(circuits as u32));
    if let Err(e) = cb.call1(&JsValue::NULL, &o) {
        log::warn(&format!("onProgress threw: {e:?}"));
    }
}
