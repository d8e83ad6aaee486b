//! A relay's keys and the CERTS cell it presents (tor-spec §4.2,
//! cert-spec): a 1024-bit RSA identity in a self-signed X.509 certificate,
//! an Ed25519 identity certifying an Ed25519 signing key, the signing key
//! certifying the SHA-256 of our TLS certificate, and the RSA identity
//! cross-certifying the Ed25519 identity. Keys live for the process.
//! As initiator (our outbound channels) the signing key certifies an
//! Ed25519 authentication key instead of the TLS certificate, which signs
//! AUTHENTICATE (tor-spec §4.4.2).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::NodeError;

use ed25519_dalek::SigningKey;
use peersm_core::cell::Certs;
use peersm_core::channel::tor_certs::tor_cert_type;
use peersm_core::crypto::ntor::NtorRelayKey;
pub(crate) use peersm_core::crypto::relay_certs::ed25519_cert;
use peersm_core::crypto::relay_certs::{relay_certs, CertSigners};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::EncodePublicKey;
use rsa::sha2::{Digest, Sha256};
use rsa::PrivateKey;

pub struct RelayKeys {
    pub rsa_identity: PrivateKey,
    pub rsa_id: [u8; 20],
    pub ed_identity: SigningKey,
    pub ed_signing: SigningKey,
    /// Signs AUTH0003 bodies on channels we open (CERTS type 6).
    pub ed_auth: SigningKey,
    pub ntor: NtorRelayKey,
    /// A TAP onion key: never used for handshakes (we speak ntor only), but
    /// directory authorities still require one in descriptors.
    pub tap_onion: PrivateKey,
    /// DER of our TLS certificate and its private key (PKCS#8).
    pub tls_cert: Vec<u8>,
    pub tls_key: Vec<u8>,
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    b
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl RelayKeys {
    pub fn generate() -> Result<RelayKeys, NodeError> {
        let rsa_identity = PrivateKey::new(&mut getrandom::SysRng, 1024).map_err(key_err)?;
        let spki = rsa_identity
            .to_public_key()
            .to_public_key_der()
            .map_err(key_err)?;
        let public =
            peersm_core::crypto::RsaIdentityKey::from_spki(spki.as_bytes()).map_err(key_err)?;
        let rsa_id = public.tor_identity_digest().map_err(key_err)?;
        let tls = rcgen::generate_simple_self_signed(vec!["www.peersm.invalid".to_string()])
            .map_err(key_err)?;
        Ok(RelayKeys {
            rsa_identity,
            rsa_id,
            ed_identity: SigningKey::from_bytes(&random32()),
            ed_signing: SigningKey::from_bytes(&random32()),
            ed_auth: SigningKey::from_bytes(&random32()),
            ntor: NtorRelayKey::new(rsa_id, random32()),
            tap_onion: PrivateKey::new(&mut getrandom::SysRng, 1024).map_err(key_err)?,
            tls_cert: tls.cert.der().to_vec(),
            tls_key: tls.signing_key.serialize_der(),
        })
    }

    /// Loads the keys saved at `path`, or generates and saves new ones
    /// (owner-only permissions): a relay or bridge keeps its identity
    /// across restarts.
    pub fn load_or_generate(path: &std::path::Path) -> Result<RelayKeys, NodeError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_saved(&text)
                .map_err(|e| NodeError::Keys(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| NodeError::Keys(format!("{}: {e}", dir.display())))?;
                }
                let tmp = path.with_extension("tmp");
                write_private(&tmp, keys.to_saved()?.as_bytes())
                    .map_err(|e| NodeError::Keys(format!("{}: {e}", tmp.display())))?;
                std::fs::rename(&tmp, path)
                    .map_err(|e| NodeError::Keys(format!("{}: {e}", path.display())))?;
                Ok(keys)
            }
            Err(e) => Err(NodeError::Keys(format!("{}: {e}", path.display()))),
        }
    }

    /// The secret keys and TLS certificate as JSON with hex fields.
    fn to_saved(&self) -> Result<String, NodeError> {
        use rsa::pkcs8::EncodePrivateKey;
        let der = |k: &PrivateKey| -> Result<String, NodeError> {
            Ok(hex::encode(k.to_pkcs8_der().map_err(key_err)?.as_bytes()))
        };
        let saved = serde_json::json!({
            "format": "peersm relay keys v1",
            "rsa_identity": der(&self.rsa_identity)?,
            "ed_identity": hex::encode(self.ed_identity.to_bytes()),
            "ed_signing": hex::encode(self.ed_signing.to_bytes()),
            "ed_auth": hex::encode(self.ed_auth.to_bytes()),
            "ntor": hex::encode(self.ntor.secret.to_bytes()),
            "tap_onion": der(&self.tap_onion)?,
            "tls_cert": hex::encode(&self.tls_cert),
            "tls_key": hex::encode(&self.tls_key),
        });
        Ok(saved.to_string())
    }

    fn from_saved(text: &str) -> Result<RelayKeys, NodeError> {
        use rsa::pkcs8::DecodePrivateKey;
        let v: serde_json::Value = serde_json::from_str(text).map_err(key_err)?;
        if v.get("format").and_then(|f| f.as_str()) != Some("peersm relay keys v1") {
            return Err(NodeError::Keys("not a peersm relay key file".into()));
        }
        let bytes = |field: &str| -> Result<Vec<u8>, NodeError> {
            hex::decode(
                v.get(field)
                    .and_then(|f| f.as_str())
                    .ok_or_else(|| NodeError::Keys(format!("missing {field}")))?,
            )
            .map_err(|_| NodeError::Keys(format!("{field} is not hex")))
        };
        let key32 = |field: &str| -> Result<[u8; 32], NodeError> {
            bytes(field)?
                .try_into()
                .map_err(|_| NodeError::Keys(format!("{field} is not 32 bytes")))
        };
        let rsa = |field: &str| -> Result<PrivateKey, NodeError> {
            PrivateKey::from_pkcs8_der(&bytes(field)?)
                .map_err(|e| NodeError::Keys(format!("{field}: {e}")))
        };
        let rsa_identity = rsa("rsa_identity")?;
        let spki = rsa_identity
            .to_public_key()
            .to_public_key_der()
            .map_err(key_err)?;
        let rsa_id = peersm_core::crypto::RsaIdentityKey::from_spki(spki.as_bytes())
            .and_then(|k| k.tor_identity_digest())
            .map_err(key_err)?;
        Ok(RelayKeys {
            rsa_identity,
            rsa_id,
            ed_identity: SigningKey::from_bytes(&key32("ed_identity")?),
            ed_signing: SigningKey::from_bytes(&key32("ed_signing")?),
            ed_auth: SigningKey::from_bytes(&key32("ed_auth")?),
            ntor: NtorRelayKey::new(rsa_id, key32("ntor")?),
            tap_onion: rsa("tap_onion")?,
            tls_cert: bytes("tls_cert")?,
            tls_key: bytes("tls_key")?,
        })
    }

    pub fn ed25519_id(&self) -> [u8; 32] {
        self.ed_identity.verifying_key().to_bytes()
    }

    /// SHA-256 of our DER PKCS#1 RSA identity key (AUTH0003's CID).
    pub fn rsa_key_sha256(&self) -> Result<[u8; 32], NodeError> {
        let der = self
            .rsa_identity
            .to_public_key()
            .to_pkcs1_der()
            .map_err(key_err)?;
        Ok(Sha256::digest(der.as_bytes()).into())
    }

    /// The CERTS cell body for link handshakes as responder: the signing
    /// key certifies our TLS certificate (type 5).
    pub fn certs(&self) -> Result<Certs, NodeError> {
        let tls_digest: [u8; 32] = Sha256::digest(&self.tls_cert).into();
        self.certs_with(tor_cert_type::ED_SIGNING_LINK, 3, tls_digest)
    }

    /// The CERTS cell body as initiator: the signing key certifies the
    /// authentication key (type 6) that signs AUTHENTICATE.
    pub fn initiator_certs(&self) -> Result<Certs, NodeError> {
        let auth_key = self.ed_auth.verifying_key().to_bytes();
        self.certs_with(tor_cert_type::ED_SIGNING_AUTH, 1, auth_key)
    }

    /// The CERTS cell body of a bridge on its WebSocket endpoint: no TLS
    /// certificate to bind there, so the signing key certifies our ntor key
    /// (Peersm type 0x81) and tabs authenticate us through ntor.
    pub fn bridge_certs(&self) -> Result<Certs, NodeError> {
        use peersm_core::cell::cert_type::{PEERSM_BRIDGE_NTOR, PEERSM_NTOR_KEY_TYPE};
        self.certs_with(PEERSM_BRIDGE_NTOR, PEERSM_NTOR_KEY_TYPE, self.ntor.public)
    }

    /// Types 2, 4, `signed_type` (by the signing key over `certified`) and 7.
    fn certs_with(
        &self,
        signed_type: u8,
        certified_key_type: u8,
        certified: [u8; 32],
    ) -> Result<Certs, NodeError> {
        let serial: [u8; 8] = random32()[..8].try_into().unwrap_or_default();
        relay_certs(
            &self.signers(),
            signed_type,
            certified_key_type,
            certified,
            unix_now(),
            serial,
        )
        .map_err(key_err)
    }

    fn signers(&self) -> CertSigners<'_> {
        CertSigners {
            rsa_identity: &self.rsa_identity,
            ed_identity: &self.ed_identity,
            ed_signing: &self.ed_signing,
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

fn key_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Keys(e.to_string())
}

/// Our identity key signs link handshakes (a bridge federating with another).
impl crate::link::Signer for RelayKeys {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, NodeError> {
        let digest = Sha256::digest(message);
        self.rsa_identity
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .map_err(key_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peersm_core::channel::tor_certs::verify_relay_certs;

    #[test]
    fn our_certs_pass_our_own_checks() {
        let keys = RelayKeys::generate().unwrap();
        let certs = keys.certs().unwrap();
        let id = verify_relay_certs(
            &certs,
            &keys.tls_cert,
            unix_now(),
            Some(&keys.rsa_id),
            Some(&keys.ed25519_id()),
        )
        .unwrap();
        assert_eq!(id.rsa_id, keys.rsa_id);
        assert!(verify_relay_certs(&certs, b"another tls cert", unix_now(), None, None).is_err());
    }

    /// Our initiator against a scripted responder (a relay offering
    /// AUTH0003): every field of the AUTHENTICATE body is what the
    /// responder computes from its side (tor-spec §4.4.2).
    #[test]
    fn relay_authenticate_fields() {
        use peersm_core::cell::{
            command, AuthChallenge, Authenticate, CircIdLen, Netinfo, Versions,
        };
        use peersm_core::channel::tor_auth::{RelayAuthConfig, AUTH_METHOD_ED25519_SHA256_RFC5705};
        use peersm_core::channel::ResponderCheck;
        use peersm_core::channel::{decode_frame, encode_cells, InitiatorEvent, LinkInitiator};
        use peersm_core::crypto::ed25519_cert::Ed25519Cert;

        let us = RelayKeys::generate().unwrap();
        let them = RelayKeys::generate().unwrap();
        let cfg = RelayAuthConfig {
            certs: us.initiator_certs().unwrap(),
            cid: us.rsa_key_sha256().unwrap(),
            cid_ed: us.ed25519_id(),
            auth_key: us.ed_auth.clone(),
            tls_secrets: [0x5a; 32],
        };
        let check = ResponderCheck::TorRelay {
            tls_cert: them.tls_cert.clone(),
            now: unix_now(),
            rsa_id: Some(them.rsa_id),
            ed25519_id: Some(them.ed25519_id()),
        };
        let mut link = LinkInitiator::new(None, check)
            .unwrap()
            .with_relay_auth(cfg);
        let our_versions = link.poll_transmit().unwrap();

        // The responder's side: VERSIONS (2-byte ids), CERTS, AUTH_CHALLENGE,
        // NETINFO; SLOG covers all but NETINFO.
        let mut server_bytes = Versions::new(&[3, 4, 5])
            .to_cell()
            .to_bytes(CircIdLen::Two)
            .unwrap();
        let challenge = AuthChallenge {
            challenge: [9; 32],
            methods: vec![1, AUTH_METHOD_ED25519_SHA256_RFC5705],
        };
        server_bytes.extend(
            encode_cells(
                &[
                    them.certs().unwrap().to_cell().unwrap(),
                    challenge.to_cell().unwrap(),
                ],
                CircIdLen::Four,
            )
            .unwrap(),
        );
        let slog: [u8; 32] = Sha256::digest(&server_bytes).into();
        let netinfo = Netinfo {
            timestamp: 0,
            other_addr: None,
            my_addrs: Vec::new(),
        };
        server_bytes.extend(
            netinfo
                .to_cell()
                .unwrap()
                .to_bytes(CircIdLen::Four)
                .unwrap(),
        );
        link.handle_frame(&server_bytes).unwrap();
        assert!(matches!(
            link.poll_event(),
            Some(InitiatorEvent::Open {
                authenticated: true,
                ..
            })
        ));

        let sent = link.poll_transmit().unwrap();
        let cells = decode_frame(&sent, CircIdLen::Four, |_| CircIdLen::Four).unwrap();
        let commands: Vec<u8> = cells.iter().map(|c| c.command).collect();
        assert_eq!(
            commands,
            [command::CERTS, command::AUTHENTICATE, command::NETINFO]
        );
        let certs = Certs::from_cell(&cells[0]).unwrap();
        let types: Vec<u8> = certs.certs.iter().map(|c| c.cert_type).collect();
        assert_eq!(types, [2, 4, 6, 7]);
        let mut client_bytes = our_versions.clone();
        client_bytes.extend(cells[0].to_bytes(CircIdLen::Four).unwrap());
        let clog: [u8; 32] = Sha256::digest(&client_bytes).into();

        let auth = Authenticate::from_cell(&cells[1]).unwrap();
        assert_eq!(auth.method, AUTH_METHOD_ED25519_SHA256_RFC5705);
        let body = &auth.authentication;
        assert_eq!(body.len(), 8 + 8 * 32 + 24 + 64);
        let field = |i: usize| &body[8 + 32 * i..8 + 32 * (i + 1)];
        assert_eq!(&body[..8], b"AUTH0003");
        assert_eq!(field(0), us.rsa_key_sha256().unwrap());
        assert_eq!(field(1), them.rsa_key_sha256().unwrap());
        assert_eq!(field(2), us.ed25519_id());
        assert_eq!(field(3), them.ed25519_id());
        assert_eq!(field(4), slog);
        assert_eq!(field(5), clog);
        assert_eq!(field(6), &Sha256::digest(&them.tls_cert)[..]);
        assert_eq!(field(7), [0x5a; 32]);

        // The type-6 certificate names the key that signed the body.
        let auth_cert = Ed25519Cert::parse(certs.get(6).unwrap()).unwrap();
        auth_cert
            .verify(&us.ed_signing.verifying_key().to_bytes(), unix_now())
            .unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&auth_cert.certified_key).unwrap();
        let (signed, sig) = body.split_at(body.len() - 64);
        key.verify_strict(signed, &ed25519_dalek::Signature::from_slice(sig).unwrap())
            .unwrap();
    }

    #[test]
    fn bridge_certs_prove_the_ntor_key() {
        use peersm_core::channel::tor_certs::verify_bridge_certs;
        let keys = RelayKeys::generate().unwrap();
        let certs = keys.bridge_certs().unwrap();
        let id = verify_bridge_certs(&certs, unix_now(), Some(&keys.rsa_id)).unwrap();
        assert_eq!(id.ntor_key, keys.ntor.public);
        assert_eq!(id.relay.ed25519_id, keys.ed25519_id());
        assert!(verify_bridge_certs(&certs, unix_now(), Some(&[0; 20])).is_err());
        // Relay CERTS (no ntor certificate) do not pass as a bridge's.
        assert!(verify_bridge_certs(&keys.certs().unwrap(), unix_now(), None).is_err());
    }

    #[test]
    fn saved_keys_come_back_the_same() {
        let dir = std::env::temp_dir().join(format!("peersm-keys-{}", std::process::id()));
        let path = dir.join("relay.json");
        let _ = std::fs::remove_file(&path);
        let first = RelayKeys::load_or_generate(&path).unwrap();
        let again = RelayKeys::load_or_generate(&path).unwrap();
        assert_eq!(first.rsa_id, again.rsa_id);
        assert_eq!(first.ed25519_id(), again.ed25519_id());
        assert_eq!(first.ntor.public, again.ntor.public);
        assert_eq!(first.tls_cert, again.tls_cert);
        // The reloaded keys still make certificates that verify.
        let certs = again.certs().unwrap();
        verify_relay_certs(
            &certs,
            &again.tls_cert,
            unix_now(),
            Some(&first.rsa_id),
            None,
        )
        .unwrap();
        std::fs::write(&path, "{\"format\": \"something else\"}").unwrap();
        assert!(
            RelayKeys::load_or_generate(&path).is_err(),
            "a foreign file is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
