//! The core's micro-benchmarks, callable from the page or a test driver:
//! `benchRelayCrypto(megabytes)` and `benchNtor(rounds)`.

use js_sys::{Function, Object};
use wasm_bindgen::prelude::*;

use super::js::{get, js_error, set};

/// `performance.now()`, falling back to `Date.now()`.
fn now_ms() -> f64 {
    let perf = super::js::global_property("performance").ok();
    let now = perf
        .as_ref()
        .and_then(|p| get(p, "now").ok())
        .and_then(|f| f.dyn_into::<Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f
            .call0(&p)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}

/// Relay crypto over `megabytes` of cells through one hop; MB/s for the
/// client side, the relay side and bare AES-128-CTR.
#[wasm_bindgen(js_name = benchRelayCrypto)]
pub fn bench_relay_crypto(megabytes: u32) -> Result<JsValue, JsValue> {
    let r = peersm_core::bench::relay_crypto(megabytes, &now_ms)
        .ok_or_else(|| js_error("benchmark failed"))?;
    let o = Object::new();
    set(&o, "clientEncrypt", &r.client_encrypt.into())?;
    set(&o, "relayDecrypt", &r.relay_decrypt.into())?;
    set(&o, "aesCtrOnly", &r.aes_ctr_only.into())?;
    Ok(o.into())
}

/// Milliseconds per full ntor handshake.
#[wasm_bindgen(js_name = benchNtor)]
pub fn bench_ntor(rounds: u32) -> Result<f64, JsValue> {
    peersm_core::bench::ntor_handshake_ms(rounds, &now_ms)
        .ok_or_else(|| js_error("benchmark failed"))
}
