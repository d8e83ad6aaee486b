//! The session identity in WebCrypto: an RSASSA-PKCS1-v1_5 key pair made
//! with `extractable: false`, so the private key never exists in wasm or JS
//! memory as bytes. Only the SPKI leaves; the peer ID is its SHA-1.

use js_sys::{Array, ArrayBuffer, Object, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::CryptoKey;

use super::js::{get, js_error, set, subtle};
use peersm_core::crypto::{PeerId, RsaIdentityKey};

const ALGORITHM: &str = "RSASSA-PKCS1-v1_5";
/// Modulus size for tab identities (docs/PROTOCOL.md "Identity").
pub const MODULUS_BITS: u32 = 2048;

pub struct SessionIdentity {
    private_key: CryptoKey,
    public: RsaIdentityKey,
}

impl SessionIdentity {
    /// Generates a fresh, non-extractable identity key pair.
    pub async fn generate() -> Result<SessionIdentity, JsValue> {
        let subtle = subtle()?;
        let params = Object::new();
        set(&params, "name", &ALGORITHM.into())?;
        set(&params, "modulusLength", &MODULUS_BITS.into())?;
        set(
            &params,
            "publicExponent",
            &Uint8Array::from(&[1u8, 0, 1][..]).into(),
        )?;
        set(&params, "hash", &"SHA-256".into())?;
        let usages = Array::of2(&"sign".into(), &"verify".into());
        let pair =
            JsFuture::from(subtle.generate_key_with_object(&params, false, &usages)?).await?;
        let private_key: CryptoKey = get(&pair, "privateKey")?.dyn_into()?;
        let public_key: CryptoKey = get(&pair, "publicKey")?.dyn_into()?;
        let spki: ArrayBuffer = JsFuture::from(subtle.export_key("spki", &public_key)?)
            .await?
            .dyn_into()?;
        let spki = Uint8Array::new(&spki).to_vec();
        let public = RsaIdentityKey::from_spki(&spki)
            .map_err(|e| js_error(&format!("WebCrypto returned an unusable public key: {e}")))?;
        Ok(SessionIdentity {
            private_key,
            public,
        })
    }

    pub fn id(&self) -> PeerId {
        self.public.id()
    }

    pub fn spki(&self) -> &[u8] {
        self.public.spki_der()
    }

    pub fn modulus(&self) -> Vec<u8> {
        self.public.modulus()
    }

    /// The WebCrypto handle of the private key (for tests that check it
    /// cannot be exported).
    pub fn private_key(&self) -> &CryptoKey {
        &self.private_key
    }

    /// RSASSA-PKCS1-v1_5 / SHA-256 signature of `message`.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JsValue> {
        let promise =
            subtle()?.sign_with_str_and_u8_array(ALGORITHM, &self.private_key, message)?;
        let sig: ArrayBuffer = JsFuture::from(promise).await?.dyn_into()?;
        Ok(Uint8Array::new(&sig).to_vec())
    }
}
