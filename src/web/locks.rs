//! One tab of a browser profile at a time per file: the Web Locks API
//! (`navigator.locks`) across every tab of the origin. Two tabs of one
//! profile share one IndexedDB, so two downloads of the same file would
//! write the same records and blocks over each other.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::js::{js_error, set};

/// A Web Lock held until dropped.
pub struct FileLock {
    release: Option<Function>,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// Takes the lock named `name` if no tab of this profile holds it:
/// `None` when another does. Without Web Locks (an old browser) it
/// always succeeds, holding nothing.
pub async fn try_lock(name: &str) -> Result<Option<FileLock>, JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let locks = Reflect::get(&navigator, &"locks".into()).unwrap_or(JsValue::UNDEFINED);
    if locks.is_undefined() || locks.is_null() {
        return Ok(Some(FileLock { release: None }));
    }
    let request: Function = Reflect::get(&locks, &"request".into())?.dyn_into()?;
    // Resolved by `FileLock::drop`: the lock is held until then.
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    // Resolved by the lock's callback: whether it was granted.
    let mut grant: Option<Function> = None;
    let granted = Promise::new(&mut |resolve, _| grant = Some(resolve));
    let grant = grant.ok_or_else(|| js_error("Web Locks: no resolver"))?;
    let on_failure = grant.clone();
    let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let ok = !lock.is_null() && !lock.is_undefined();
        let _ = grant.call1(&JsValue::NULL, &JsValue::from_bool(ok));
        if ok {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let options = Object::new();
    set(&options, "ifAvailable", &JsValue::TRUE)?;
    let requested: Promise = request
        .call3(&locks, &JsValue::from_str(name), &options, &callback)?
        .dyn_into()?;
    // A request that fails (an opaque origin, a document going away) never
    // calls back: go on without the lock rather than wait forever.
    let failed = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
        let _ = on_failure.call1(&JsValue::NULL, &JsValue::from_str("failed"));
    });
    let _ = requested.catch(&failed);
    // Called at most once, when the request fails; kept until then.
    failed.forget();
    match JsFuture::from(granted).await?.as_bool() {
        Some(true) => Ok(Some(FileLock { release })),
        Some(false) => Ok(None),
        None => Ok(Some(FileLock { release: None })),
    }
}
