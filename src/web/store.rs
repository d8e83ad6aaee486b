//! Downloads kept in IndexedDB (through rexie) as they arrive: one record
//! per chunk, keyed `[download id, sequence number]`, so a large body never
//! has to fit in memory and survives until the page deletes it.

use js_sys::{Array, Uint8Array};
use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::JsValue;

use super::js::js_error;

const DB_NAME: &str = "peersm-downloads";
const STORE: &str = "chunks";

fn db_error(e: rexie::Error) -> JsValue {
    js_error(&format!("IndexedDB: {e}"))
}

fn key(id: &str, seq: u32) -> JsValue {
    Array::of2(&JsValue::from_str(id), &JsValue::from(seq)).into()
}

fn range(id: &str) -> Result<KeyRange, JsValue> {
    KeyRange::bound(&key(id, 0), &key(id, u32::MAX), None, None)
        .map_err(|e| js_error(&format!("IndexedDB key range: {e}")))
}

pub(crate) struct DownloadStore {
    db: Rexie,
}

impl DownloadStore {
    pub(crate) async fn open() -> Result<DownloadStore, JsValue> {
        let db = Rexie::builder(DB_NAME)
            .version(1)
            .add_object_store(ObjectStore::new(STORE))
            .build()
            .await
            .map_err(db_error)?;
        Ok(DownloadStore { db })
    }

    pub(crate) async fn put_chunk(&self, id: &str, seq: u32, data: &[u8]) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadWrite)
            .map_err(db_error)?;
        let store = tx.store(STORE).map_err(db_error)?;
        let value: JsValue = Uint8Array::from(data).into();
        store
            .put(&value, Some(&key(id, seq)))
            .await
            .map_err(db_error)?;
        tx.done().await.map_err(db_error)?;
        Ok(())
    }

    /// Every chunk of download `id`, in order.
    pub(crate) async fn chunks(&self, id: &str) -> Result<Array, JsValue> {
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadOnly)
            .map_err(db_error)?;
        let store = tx.store(STORE).map_err(db_error)?;
        let values = store
            .get_all(Some(range(id)?), None)
            .await
            .map_err(db_error)?;
        Ok(values.into_iter().collect())
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), JsValue> {
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadWrite)
            .map_err(db_error)?;
        let store = tx.store(STORE).map_err(db_error)?;
        store.delete(range(id)?.into()).await.map_err(db_error)?;
        tx.done().await.map_err(db_error)?;
        Ok(())
    }
}
