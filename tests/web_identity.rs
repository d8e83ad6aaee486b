//! Browser tests (wasm-bindgen-test in headless Chromium): the session
//! identity lives in WebCrypto, cannot be exported, and its ID is the SHA-1
//! of its SPKI. Run with `npm run test:browser`.
#![cfg(target_arch = "wasm32")]

use js_sys::{ArrayBuffer, Object, Reflect, Uint8Array};
use peersm::web::{Peer, SessionIdentity};
use sha1::{Digest, Sha1};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn subtle() -> web_sys::SubtleCrypto {
    let crypto: web_sys::Crypto = Reflect::get(&js_sys::global(), &"crypto".into())
        .unwrap()
        .dyn_into()
        .unwrap();
    crypto.subtle()
}

#[wasm_bindgen_test]
async fn private_key_cannot_be_exported() {
    let identity = SessionIdentity::generate().await.unwrap();
    assert!(!identity.private_key().extractable());
    for format in ["pkcs8", "jwk"] {
        let exported =
            JsFuture::from(subtle().export_key(format, identity.private_key()).unwrap()).await;
        assert!(
            exported.is_err(),
            "exporting the private key as {format} must fail"
        );
    }
}

#[wasm_bindgen_test]
async fn peer_id_is_sha1_of_the_exported_spki() {
    let identity = SessionIdentity::generate().await.unwrap();
    // Sign and verify through WebCrypto to get at the public key the browser
    // holds, then export that key's SPKI independently of our code.
    let params = Object::new();
    Reflect::set(&params, &"name".into(), &"RSASSA-PKCS1-v1_5".into()).unwrap();
    let key = JsFuture::from(
        subtle()
            .import_key_with_object(
                "spki",
                &Uint8Array::from(identity.spki()).into(),
                &{
                    Reflect::set(&params, &"hash".into(), &"SHA-256".into()).unwrap();
                    params.clone()
                },
                true,
                &js_sys::Array::of1(&"verify".into()),
            )
            .unwrap(),
    )
    .await
    .unwrap();
    let key: web_sys::CryptoKey = key.dyn_into().unwrap();
    let message = b"proof that the spki belongs to the private key";
    let signature = identity.sign(message).await.unwrap();
    let ok = JsFuture::from(
        subtle()
            .verify_with_str_and_u8_array_and_u8_array(
                "RSASSA-PKCS1-v1_5",
                &key,
                &signature,
                message,
            )
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        ok,
        JsValue::TRUE,
        "the SPKI must verify the private key's signatures"
    );

    let spki: ArrayBuffer = JsFuture::from(subtle().export_key("spki", &key).unwrap())
        .await
        .unwrap()
        .dyn_into()
        .unwrap();
    let spki = Uint8Array::new(&spki).to_vec();
    let expected = hex::encode(Sha1::digest(&spki));
    assert_eq!(identity.id().to_hex(), expected);
    assert_eq!(identity.id().to_hex().len(), 40);
    assert_eq!(identity.modulus().len(), 256, "2048-bit modulus");
}

fn options(bridges: &[&str]) -> JsValue {
    let o = Object::new();
    let list = js_sys::Array::new();
    for b in bridges {
        list.push(&JsValue::from_str(b));
    }
    Reflect::set(&o, &"bridges".into(), &list).unwrap();
    Reflect::set(&o, &"reconnect".into(), &JsValue::FALSE).unwrap();
    o.into()
}

#[wasm_bindgen_test]
async fn two_starts_give_two_ids() {
    // Port 9 (discard) on loopback: nothing listens, the link just fails.
    let a = Peer::start(options(&["ws://127.0.0.1:9/bridge"]))
        .await
        .unwrap();
    let b = Peer::start(options(&["ws://127.0.0.1:9/bridge"]))
        .await
        .unwrap();
    assert_eq!(a.id().len(), 40);
    assert_ne!(a.id(), b.id());
    assert_ne!(a.modulus(), b.modulus());
    assert_eq!(a.modulus().len(), 512);
    a.stop();
    b.stop();
    assert_eq!(a.status(), "disconnected");
}

#[wasm_bindgen_test]
async fn bad_options_are_refused_with_a_clear_error() {
    for bad in [
        options(&[]),
        options(&["http://127.0.0.1:1/"]),
        JsValue::from(3),
    ] {
        let err = Peer::start(bad).await.err().expect("must be refused");
        let message = Reflect::get(&err, &"message".into())
            .unwrap()
            .as_string()
            .unwrap();
        assert!(message.starts_with("Peer.start:"), "{message}");
    }
}
