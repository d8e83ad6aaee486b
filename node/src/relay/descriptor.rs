//! Our relay's server descriptor (dir-spec §2.1.1) and its upload to the
//! directory authorities (dir-spec §3.2: HTTP POST /tor/ on a DirPort), so
//! that the authorities vote it into the consensus and other relays treat
//! it as a relay (C tor exits open exit streams only for circuits arriving
//! from relays in the consensus).

use std::net::SocketAddr;

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signer, VerifyingKey};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::sha2::{Digest, Sha256, Sha512};
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use peersm_core::crypto::der::civil_from_unix;
use peersm_core::dir::base64_encode;

use super::keys::{ed25519_cert, unix_now, RelayKeys};
use crate::error::NodeError;

/// Ed25519 certificate type for the ntor key cross-certifying the identity
/// (cert-spec §A.1, CERT_TYPE_ONION_ID).
const CERT_TYPE_NTOR_CROSSCERT: u8 = 0x0a;

/// Link=4-5, circuits with ntor (Relay=2), authenticated SENDMEs (FlowCtrl=1),
/// microdescriptor consensus (Microdesc=2, Cons=2, Desc=2), tunnelled
/// directory requests (DirCache=2). Nothing about onion services.
pub const PROTOCOLS: &str =
    "Cons=2 Desc=2 DirCache=2 FlowCtrl=1 Link=4-5 LinkAuth=3 Microdesc=2 Relay=2";

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64_encode(der, true);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// "YYYY-MM-DD HH:MM:SS" (dir-spec time format).
fn dir_time(unix: i64) -> String {
    let (y, m, d, h, mi, s) = civil_from_unix(unix);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// The ntor onion key as an Ed25519 key (C tor's
/// `ed25519_keypair_from_curve25519_keypair`): the same clamped scalar, a
/// nonce prefix hashed from it, and the sign bit of the resulting point.
fn ntor_as_ed25519(keys: &RelayKeys) -> (ExpandedSecretKey, VerifyingKey, u8) {
    let mut a = keys.ntor.secret.to_bytes();
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let mut h = Sha512::new();
    h.update(b"Derive high part of ed25519 key from curve25519 key\0");
    h.update(a);
    let prefix = h.finalize();
    let mut expanded = [0u8; 64];
    let (low, high) = expanded.split_at_mut(32);
    low.copy_from_slice(&a);
    high.copy_from_slice(prefix.get(..32).unwrap_or(&[0; 32]));
    let esk = ExpandedSecretKey::from_bytes(&expanded);
    let vk = VerifyingKey::from(&esk);
    let sign_bit = vk.as_bytes()[31] >> 7;
    (esk, vk, sign_bit)
}

/// Builds and signs the server descriptor.
pub fn server_descriptor(
    keys: &RelayKeys,
    nickname: &str,
    or_addr: SocketAddr,
    policy_lines: &[String],
) -> Result<String, NodeError> {
    let now = unix_now();
    let expires = u32::try_from(now / 3600)
        .unwrap_or(u32::MAX)
        .saturating_add(24 * 30);
    let id_signing = ed25519_cert(
        4,
        expires,
        1,
        keys.ed_signing.verifying_key().to_bytes(),
        &keys.ed_identity,
    );
    let (esk, vk, sign_bit) = ntor_as_ed25519(keys);
    let mut crosscert = vec![1, CERT_TYPE_NTOR_CROSSCERT];
    crosscert.extend_from_slice(&expires.to_be_bytes());
    crosscert.push(1);
    crosscert.extend_from_slice(&keys.ed25519_id());
    crosscert.push(0);
    let sig = raw_sign::<Sha512>(&esk, &crosscert, &vk);
    crosscert.extend_from_slice(&sig.to_bytes());
    let rsa_der = keys
        .rsa_identity
        .to_public_key()
        .to_pkcs1_der()
        .map_err(key_err)?;
    let fingerprint: Vec<String> = hex::encode_upper(keys.rsa_id)
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect();

    let mut d = String::new();
    d += &format!(
        "router {nickname} {} {} 0 0\n",
        or_addr.ip(),
        or_addr.port()
    );
    d += "identity-ed25519\n";
    d += &pem("ED25519 CERT", &id_signing);
    d += &format!(
        "master-key-ed25519 {}\n",
        base64_encode(&keys.ed25519_id(), false)
    );
    d += &format!("platform Peersm {} on Linux\n", env!("CARGO_PKG_VERSION"));
    d += &format!("proto {PROTOCOLS}\n");
    d += &format!("published {}\n", dir_time(now));
    d += &format!("fingerprint {}\n", fingerprint.join(" "));
    d += "uptime 0\n";
    d += "bandwidth 10485760 10485760 1048576\n";
    d += "signing-key\n";
    d += &pem("RSA PUBLIC KEY", rsa_der.as_bytes());
    let tap_der = keys
        .tap_onion
        .to_public_key()
        .to_pkcs1_der()
        .map_err(key_err)?;
    d += "onion-key\n";
    d += &pem("RSA PUBLIC KEY", tap_der.as_bytes());
    // dir-spec §2.1.1 onion-key-crosscert: the TAP key signs (unhashed,
    // PKCS#1 padded) our RSA identity digest and Ed25519 identity.
    let mut cross = keys.rsa_id.to_vec();
    cross.extend_from_slice(&keys.ed25519_id());
    let tap_sig = keys
        .tap_onion
        .sign(Pkcs1v15Sign::new_unprefixed(), &cross)
        .map_err(key_err)?;
    d += "onion-key-crosscert\n";
    d += &pem("CROSSCERT", &tap_sig);
    d += &format!(
        "ntor-onion-key {}\n",
        base64_encode(&keys.ntor.public, false)
    );
    d += &format!("ntor-onion-key-crosscert {sign_bit}\n");
    d += &pem("ED25519 CERT", &crosscert);
    for line in policy_lines {
        d += line;
        d += "\n";
    }
    d += "tunnelled-dir-server\n";
    d += "router-sig-ed25519 ";
    let mut h = Sha256::new();
    h.update(b"Tor router descriptor signature v1");
    h.update(d.as_bytes());
    let ed_sig = keys.ed_signing.sign(&h.finalize());
    d += &format!("{}\n", base64_encode(&ed_sig.to_bytes(), false));
    d += "router-signature\n";
    let digest = Sha1::digest(d.as_bytes());
    let rsa_sig = keys
        .rsa_identity
        .sign(Pkcs1v15Sign::new_unprefixed(), &digest)
        .map_err(key_err)?;
    d += &pem("SIGNATURE", &rsa_sig);
    Ok(d)
}

/// POSTs the descriptor to an authority's DirPort; Ok when it answers 200.
pub async fn upload(dir_port: SocketAddr, descriptor: &str) -> Result<(), NodeError> {
    let mut sock = tokio::net::TcpStream::connect(dir_port)
        .await
        .map_err(key_err)?;
    let req = format!(
        "POST /tor/ HTTP/1.0\r\nHost: {dir_port}\r\nContent-Length: {}\r\n\r\n{descriptor}",
        descriptor.len()
    );
    sock.write_all(req.as_bytes()).await.map_err(key_err)?;
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).await.map_err(key_err)?;
    let status = String::from_utf8_lossy(&resp)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if status.contains(" 200") {
        Ok(())
    } else {
        Err(NodeError::Keys(format!(
            "authority {dir_port} answered {status:?}"
        )))
    }
}

fn key_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Keys(e.to_string())
}
