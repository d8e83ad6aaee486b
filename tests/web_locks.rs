//! Browser tests (wasm-bindgen-test in headless Chromium): the Web Lock
//! that keeps two tabs of one browser profile from downloading the same
//! file into the shared store at once. Run with `npm run test:browser`.
#![cfg(target_arch = "wasm32")]

use js_sys::Promise;
use peersm::web::locks::try_lock;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let window = web_sys::window().unwrap();
        window
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    let _ = JsFuture::from(p).await;
}

#[wasm_bindgen_test]
async fn a_file_lock_is_held_once_until_dropped() {
    let name = "peersm-file-test";
    let first = try_lock(name).await.unwrap();
    assert!(first.is_some(), "a free lock is taken");
    assert!(
        try_lock(name).await.unwrap().is_none(),
        "a held lock is refused"
    );
    assert!(try_lock("peersm-file-other").await.unwrap().is_some());
    drop(first);
    // Released once the held promise settles.
    let mut again = None;
    for _ in 0..50 {
        again = try_lock(name).await.unwrap();
        if again.is_some() {
            break;
        }
        sleep(10).await;
    }
    assert!(again.is_some(), "a dropped lock can be taken again");
}
