//! Small helpers over js-sys that work in a window and in a worker alike.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// `globalThis[name]`.
pub(crate) fn global_property(name: &str) -> Result<JsValue, JsValue> {
    Reflect::get(&js_sys::global(), &JsValue::from_str(name))
}

pub(crate) fn subtle() -> Result<web_sys::SubtleCrypto, JsValue> {
    let crypto: web_sys::Crypto = global_property("crypto")?.dyn_into()?;
    let subtle = crypto.subtle();
    if subtle.is_undefined() {
        // crypto.subtle exists only in secure contexts (https, 127.0.0.1, localhost).
        return Err(js_error(
            "WebCrypto is unavailable: Peersm needs a secure context (https or localhost)",
        ));
    }
    Ok(subtle)
}

/// `setTimeout(callback, ms)`.
pub(crate) fn set_timeout(callback: &Function, ms: i32) -> Result<(), JsValue> {
    let set_timeout: Function = global_property("setTimeout")?.dyn_into()?;
    set_timeout.call2(&JsValue::NULL, callback, &JsValue::from(ms))?;
    Ok(())
}

pub(crate) fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), value).map(|_| ())
}

pub(crate) fn get(obj: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    Reflect::get(obj, &JsValue::from_str(key))
}

/// Resolves after `ms` milliseconds.
pub(crate) async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = set_timeout(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
