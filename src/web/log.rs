//! Logging to the browser console (library code never prints).

pub(crate) fn info(msg: &str) {
    web_sys::console::info_1(&format!("[peersm] {msg}").into());
}

pub(crate) fn warn(msg: &str) {
    web_sys::console::warn_1(&format!("[peersm] {msg}").into());
}
