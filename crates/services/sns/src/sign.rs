//! The key SNS signs its messages with, and the self-signed certificate a
//! subscriber fetches from `SigningCertURL` to check them.
//!
//! Generated once per data dir (`<data>/sns/signing-key.pem`, mode 0600, and
//! `signing-cert.pem`) and kept: a subscriber that cached the certificate keeps
//! verifying across restarts. Signatures are RSA PKCS#1 v1.5 over SHA-1
//! (`SignatureVersion` 1) or SHA-256 (2), base64, of the canonical string AWS
//! documents (the fields in [`string_to_sign`]'s order, each as `Name\nvalue\n`).

use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::RsaPrivateKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The signing key and its certificate.
pub struct Signer {
    sha1: SigningKey<sha1::Sha1>,
    sha256: SigningKey<sha2::Sha256>,
    cert_pem: String,
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Signer {
    /// Load the key and certificate from `dir`, generating them the first time.
    pub fn load_or_create(dir: &Path) -> Result<Signer, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key_path = dir.join("signing-key.pem");
        let cert_path = dir.join("signing-cert.pem");
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %key_path.display(), "generating the SNS signing key");
                let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|e| format!("generating the signing key: {e}"))?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| format!("encoding the signing key: {e}"))?;
                let _ = std::fs::remove_file(&cert_path);
                write_private(&key_path, pem.as_bytes(), 0o600)
                    .map_err(|e| format!("{}: {e}", key_path.display()))?;
                pem.to_string()
            }
            Err(e) => return Err(format!("{}: {e}", key_path.display())),
        };
        let key = RsaPrivateKey::from_pkcs8_pem(&key_pem)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        let cert_pem = match std::fs::read_to_string(&cert_path) {
            Ok(pem) => pem,
            Err(_) => {
                let pem = self_signed(&key_pem)?;
                write_private(&cert_path, pem.as_bytes(), 0o644)
                    .map_err(|e| format!("{}: {e}", cert_path.display()))?;
                pem
            }
        };
        Ok(Signer {
            sha1: SigningKey::<sha1::Sha1>::new(key.clone()),
            sha256: SigningKey::<sha2::Sha256>::new(key),
            cert_pem,
        })
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Sign `text` for `SignatureVersion` `version` (`"2"`: SHA-256, else SHA-1).
    pub fn sign(&self, version: &str, text: &str) -> String {
        let sig = if version == "2" {
            self.sha256.sign(text.as_bytes()).to_vec()
        } else {
            self.sha1.sign(text.as_bytes()).to_vec()
        };
        base64::engine::general_purpose::STANDARD.encode(sig)
    }
}

fn self_signed(key_pem: &str) -> Result<String, String> {
    let kp = rcgen::KeyPair::from_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| format!("loading the signing key for its certificate: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec!["sns.nimbus.local".to_string()])
        .map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sns.nimbus.local");
    dn.push(
        rcgen::DnType::OrganizationName,
        "Nimbus (Amazon SNS compatible)",
    );
    params.distinguished_name = dn;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| format!("signing the certificate: {e}"))?;
    Ok(cert.pem())
}

/// The canonical string of a message, from its envelope fields: for a
/// `Notification` `Message`, `MessageId`, `Subject` (when present), `Timestamp`,
/// `TopicArn`, `Type`; for a `SubscriptionConfirmation` or
/// `UnsubscribeConfirmation` `Message`, `MessageId`, `SubscribeURL`, `Timestamp`,
/// `Token`, `TopicArn`, `Type`.
pub fn string_to_sign(fields: &[(&str, Option<&str>)]) -> String {
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).and_then(|(_, v)| *v);
    let keys: &[&str] = if get("Type") == Some("Notification") {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut out = String::new();
    for k in keys {
        if let Some(v) = get(k) {
            out.push_str(k);
            out.push('\n');
            out.push_str(v);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    #[test]
    fn signs_both_versions_verifiably_and_keeps_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("signing-key.pem"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(s.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let text = string_to_sign(&[
            ("Type", Some("Notification")),
            ("MessageId", Some("m")),
            ("TopicArn", Some("t")),
            ("Subject", None),
            ("Message", Some("hello")),
            ("Timestamp", Some("2024-01-01T00:00:00.000Z")),
        ]);
        assert_eq!(
            text,
            "Message\nhello\nMessageId\nm\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let key = RsaPrivateKey::from_pkcs8_pem(
            &std::fs::read_to_string(dir.path().join("signing-key.pem")).unwrap(),
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let sig1 = Signature::try_from(b64.decode(s.sign("1", &text)).unwrap().as_slice()).unwrap();
        VerifyingKey::<sha1::Sha1>::new(key.to_public_key())
            .verify(text.as_bytes(), &sig1)
            .unwrap();
        let sig2 = Signature::try_from(b64.decode(s.sign("2", &text)).unwrap().as_slice()).unwrap();
        VerifyingKey::<sha2::Sha256>::new(key.to_public_key())
            .verify(text.as_bytes(), &sig2)
            .unwrap();
        assert!(VerifyingKey::<sha1::Sha1>::new(key.to_public_key())
            .verify(b"other", &sig1)
            .is_err());
        // A second start reuses the same key and certificate.
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.cert_pem(), s.cert_pem());
        assert_eq!(again.sign("2", &text), s.sign("2", &text));
    }
}
