//! Trusting a consensus (dir-spec §3.1, §3.4.1): directory authorities'
//! key certificates, each signed by an identity whose fingerprint we were
//! configured with, and the consensus signatures made with their signing
//! keys. A consensus counts when more than half the authorities signed it.

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::base64_decode;
use crate::crypto::der::days_from_civil;
use crate::crypto::RsaIdentityKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("malformed authority certificate: {0}")]
    MalformedCert(&'static str),
    #[error("authority certificate signature does not verify")]
    BadCertSignature,
    #[error("authority certificate expired")]
    CertExpired,
    #[error("consensus signed by {valid} of {needed} needed authorities")]
    NotEnoughSignatures { valid: usize, needed: usize },
    #[error("malformed consensus signatures")]
    MalformedConsensus,
}

/// A verified authority key certificate.
#[derive(Debug, Clone)]
pub struct AuthorityCert {
    /// SHA-1 of the identity key (the DirAuthority line's v3ident).
    pub identity_fingerprint: [u8; 20],
    /// SHA-1 of the signing key's DER, as named in directory-signature lines.
    pub signing_key_digest: [u8; 20],
    pub signing_key: RsaIdentityKey,
    pub expires: i64,
}

/// Base64 body of the PEM block that follows `keyword` on its own line.
fn pem_after(doc: &str, keyword: &str) -> Option<Vec<u8>> {
    let start = doc.find(&format!("\n{keyword}\n"))? + keyword.len() + 2;
    let rest = doc.get(start..)?;
    let body_start = rest.find("-----\n")? + 6;
    let body_end = rest.find("\n-----END")?;
    let b64: String = rest.get(body_start..body_end)?.lines().collect();
    base64_decode(&b64)
}

fn keyword_value<'a>(doc: &'a str, keyword: &str) -> Option<&'a str> {
    doc.lines()
        .find_map(|l| l.strip_prefix(keyword).and_then(|r| r.strip_prefix(' ')))
}

/// "YYYY-MM-DD HH:MM:SS" to Unix seconds.
pub fn parse_dir_time(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    Some(days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec)
}

impl AuthorityCert {
    /// Parses one certificate and checks it is self-consistent and signed
    /// by its identity key, and unexpired at `now`.
    pub fn parse_and_verify(doc: &str, now: i64) -> Result<AuthorityCert, AuthorityError> {
        let bad = AuthorityError::MalformedCert;
        if !doc.starts_with("dir-key-certificate-version 3\n") {
            return Err(bad("not a version 3 key certificate"));
        }
        let identity = RsaIdentityKey::from_pkcs1_der(
            &pem_after(doc, "dir-identity-key").ok_or(bad("no identity key"))?,
        )
        .map_err(|_| bad("identity key"))?;
        let signing_der = pem_after(doc, "dir-signing-key").ok_or(bad("no signing key"))?;
        let signing_key =
            RsaIdentityKey::from_pkcs1_der(&signing_der).map_err(|_| bad("signing key"))?;
        let signature = pem_after(doc, "dir-key-certification").ok_or(bad("no certification"))?;
        let signed_end = doc
            .find("\ndir-key-certification\n")
            .ok_or(bad("no certification"))?
            + "\ndir-key-certification\n".len();
        let signed = doc.get(..signed_end).ok_or(bad("no certification"))?;
        identity
            .verify_unprefixed(&Sha1::digest(signed.as_bytes()), &signature)
            .map_err(|_| AuthorityError::BadCertSignature)?;
        let identity_fingerprint = identity
            .tor_identity_digest()
            .map_err(|_| bad("identity key"))?;
        let claimed = keyword_value(doc, "fingerprint").ok_or(bad("no fingerprint"))?;
        if !claimed.eq_ignore_ascii_case(&hex::encode(identity_fingerprint)) {
            return Err(bad("fingerprint does not match the identity key"));
        }
        let expires = keyword_value(doc, "dir-key-expires")
            .and_then(parse_dir_time)
            .ok_or(bad("no expiry"))?;
        if now > expires {
            return Err(AuthorityError::CertExpired);
        }
        Ok(AuthorityCert {
            identity_fingerprint,
            signing_key_digest: Sha1::digest(&signing_der).into(),
            signing_key,
            expires,
        })
    }

    /// Splits a `/tor/keys/all` response and keeps the certificates that
    /// verify and belong to `trusted` identity fingerprints.
    pub fn parse_many(text: &str, trusted: &[[u8; 20]], now: i64) -> Vec<AuthorityCert> {
        text.split("dir-key-certificate-version 3\n")
            .skip(1)
            .filter_map(|body| {
                Self::parse_and_verify(&format!("dir-key-certificate-version 3\n{body}"), now).ok()
            })
            .filter(|c| trusted.contains(&c.identity_fingerprint))
            .collect()
    }
}

/// Checks the consensus signatures: more than half of `trusted` must have
/// signed with a key certified in `certs`.
pub fn verify_consensus(
    text: &str,
    trusted: &[[u8; 20]],
    certs: &[AuthorityCert],
) -> Result<usize, AuthorityError> {
    let first = text
        .find("\ndirectory-signature ")
        .ok_or(AuthorityError::MalformedConsensus)?;
    let signed = text
        .get(..first + "\ndirectory-signature ".len())
        .ok_or(AuthorityError::MalformedConsensus)?;
    let sha256 = Sha256::digest(signed.as_bytes());
    let sha1 = Sha1::digest(signed.as_bytes());
    let mut signers: Vec<[u8; 20]> = Vec::new();
    let tail = text
        .get(first + 1..)
        .ok_or(AuthorityError::MalformedConsensus)?;
    for block in tail.split("directory-signature ").skip(1) {
        let header = block.lines().next().unwrap_or_default();
        let fields: Vec<&str> = header.split(' ').collect();
        let (algorithm, identity, signing) = match fields[..] {
            [alg, id, sk] => (alg, id, sk),
            [id, sk] => ("sha1", id, sk),
            _ => continue,
        };
        let (Ok(identity), Ok(signing)) = (hex::decode(identity), hex::decode(signing)) else {
            continue;
        };
        let Some(cert) = certs.iter().find(|c| {
            c.identity_fingerprint[..] == identity[..] && c.signing_key_digest[..] == signing[..]
        }) else {
            continue;
        };
        let Some(sig) = pem_after(&format!("\n{block}"), header) else {
            continue;
        };
        let digest: &[u8] = match algorithm {
            "sha256" => &sha256,
            "sha1" => &sha1,
            _ => continue,
        };
        if cert.signing_key.verify_unprefixed(digest, &sig).is_ok()
            && trusted.contains(&cert.identity_fingerprint)
            && !signers.contains(&cert.identity_fingerprint)
        {
            signers.push(cert.identity_fingerprint);
        }
    }
    let needed = trusted.len() / 2 + 1;
    if signers.len() >= needed {
        Ok(signers.len())
    } else {
        Err(AuthorityError::NotEnoughSignatures {
            valid: signers.len(),
            needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_time() {
        assert_eq!(parse_dir_time("1970-01-02 00:00:01"), Some(86_401));
        assert_eq!(parse_dir_time("nonsense"), None);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(AuthorityCert::parse_and_verify(
            "dir-key-certificate-version 3\nfingerprint AA\n",
            0
        )
        .is_err());
        assert!(AuthorityCert::parse_many("junk", &[], 0).is_empty());
        assert!(verify_consensus("network-status-version 3\n", &[[0; 20]], &[]).is_err());
    }
}
