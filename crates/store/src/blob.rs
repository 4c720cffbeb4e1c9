//! Content-addressed code bundles.

use crate::{io_err, Result, StoreError};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// A stored bundle: its sha256 (hex) and size in bytes of the zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBundle {
    pub sha256: String,
    pub size: u64,
}

/// Files under `<root>/code`: `sha256/ab/<hex>.zip` and `unpacked/<hex>/…`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    pub(crate) root: PathBuf,
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("code");
        for sub in ["sha256", "unpacked", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(io_err(root.join(sub)))?;
        }
        // Leftovers of an interrupted write or unpack are garbage by construction.
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        Ok(Self { root })
    }

    fn zip_path(&self, sha: &str) -> PathBuf {
        self.root
            .join("sha256")
            .join(&sha[..2])
            .join(format!("{sha}.zip"))
    }

    /// Validate and store a zip. Idempotent: the same bytes are stored once.
    pub fn put_zip(&self, bytes: &[u8], max_unzipped: u64) -> Result<CodeBundle> {
        check_zip(bytes, max_unzipped)?;
        let sha = hex::encode(Sha256::digest(bytes));
        let dest = self.zip_path(&sha);
        if !dest.exists() {
            let dir = dest.parent().expect("has parent");
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))
                .map_err(io_err(self.root.join("tmp")))?;
            tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
            tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
            tmp.persist(&dest).map_err(|e| StoreError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            sync_dir(dir)?;
        }
        Ok(CodeBundle {
            sha256: sha,
            size: bytes.len() as u64,
        })
    }

    pub fn read_zip(&self, sha: &str) -> Result<Vec<u8>> {
        check_sha(sha)?;
        let p = self.zip_path(sha);
        fs::read(&p).map_err(io_err(p))
    }

    pub fn has(&self, sha: &str) -> bool {
        check_sha(sha).is_ok() && self.zip_path(sha).exists()
    }

    /// The unpacked tree of a bundle, extracted on first use (atomically: into a temp
    /// dir, then renamed). Safe to call concurrently.
    pub fn unpacked(&self, sha: &str) -> Result<PathBuf> {
        check_sha(sha)?;
        let dest = self.root.join("unpacked").join(sha);
        if dest.exists() {
            return Ok(dest);
        }
        let bytes = self.read_zip(sha)?;
        let tmp = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(io_err(self.root.join("tmp")))?;
        extract(&bytes, tmp.path(), nimbus_core::limits::CODE_UNZIPPED_MAX)?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.exists() => {
                let _ = fs::remove_dir_all(&tmp_path);
                Ok(dest)
            }
            Err(e) => Err(StoreError::Io {
                path: dest,
                source: e,
            }),
        }
    }
}

pub(crate) fn check_sha(sha: &str) -> Result<()> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("not a sha256: {sha:?}")))
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// A path inside a zip, made relative and refused if it would leave the tree.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Validate a zip: every entry stays inside the bundle and the bytes it really
/// decompresses to — counted while inflating into a sink, never the sizes the archive
/// declares, which a zip bomb lies about — total at most `max_unzipped`. Memory stays
/// flat: entries are streamed, never buffered.
pub(crate) fn check_zip(bytes: &[u8], max_unzipped: u64) -> Result<u64> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| StoreError::BadZip(e.to_string()))?;
    let mut budget = Budget::new(max_unzipped);
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| StoreError::BadZip(e.to_string()))?;
        if safe_relative(f.name()).is_none() {
            return Err(StoreError::BadZip(format!(
                "entry {:?} escapes the bundle",
                f.name()
            )));
        }
        if f.is_dir() || f.is_symlink() {
            continue;
        }
        budget.copy(&mut f, &mut std::io::sink(), Path::new(""))?;
    }
    Ok(budget.max - budget.left)
}

/// What is left of the unzipped-size limit while a bundle is inflated.
struct Budget {
    max: u64,
    left: u64,
}

impl Budget {
    fn new(max: u64) -> Self {
        Self { max, left: max }
    }

    /// Stream one entry from `from` into `to`, charging the bytes really produced.
    /// Reads at most one byte past what is left, so a bomb costs no more than the
    /// limit to detect, whatever its headers claim.
    fn copy(&mut self, from: &mut impl Read, to: &mut impl Write, path: &Path) -> Result<()> {
        let mut limited = from.take(self.left + 1);
        let n = std::io::copy(&mut limited, to).map_err(|e| {
            // Read errors are the archive's (bad deflate, CRC); write errors the disk's.
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof
                || path.as_os_str().is_empty()
            {
                StoreError::BadZip(e.to_string())
            } else {
                StoreError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        if n > self.left {
            return Err(StoreError::TooLarge { max: self.max });
        }
        self.left -= n;
        Ok(())
    }
}

/// Unpack a bundle into `into`, streaming each entry to its file and bounding the
/// real bytes written by `max_unzipped` (the bundle was checked when stored, but the
/// limit is enforced again here rather than trusted).
fn extract(bytes: &[u8], into: &Path, max_unzipped: u64) -> Result<()> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| StoreError::BadZip(e.to_string()))?;
    let mut budget = Budget::new(max_unzipped);
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| StoreError::BadZip(e.to_string()))?;
        let rel = safe_relative(f.name()).ok_or_else(|| {
            StoreError::BadZip(format!("entry {:?} escapes the bundle", f.name()))
        })?;
        let path = into.join(rel);
        if f.is_dir() {
            fs::create_dir_all(&path).map_err(io_err(&path))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if f.is_symlink() {
            // Symlinks could point anywhere on the host: store nothing for them.
            tracing::warn!(entry = f.name(), "skipping symlink in code bundle");
            continue;
        }
        let mut out = fs::File::create(&path).map_err(io_err(&path))?;
        budget.copy(&mut f, &mut out, &path)?;
        // Keep the executable bit (bootstraps!), drop setuid/setgid/sticky and
        // make every file readable by the instance.
        let mode = f.unix_mode().unwrap_or(0o644) & 0o777 | 0o444;
        let mode = if mode & 0o111 != 0 {
            mode | 0o555
        } else {
            mode
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn make_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn stores_once_and_unpacks_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let z = make_zip(&[
            ("app.py", b"x = 1", 0o644),
            ("bin/bootstrap", b"#!/bin/sh", 0o755),
        ]);
        let a = store.put_zip(&z, 1 << 20).unwrap();
        let b = store.put_zip(&z, 1 << 20).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sha256.len(), 64);
        let tree = store.unpacked(&a.sha256).unwrap();
        assert_eq!(fs::read(tree.join("app.py")).unwrap(), b"x = 1");
        let mode = fs::metadata(tree.join("bin/bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        assert_eq!(store.unpacked(&a.sha256).unwrap(), tree);
    }

    #[test]
    fn refuses_escaping_entries_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        for bad in ["../evil", "/etc/passwd", "a/../../b"] {
            let z = make_zip(&[(bad, b"x", 0o644)]);
            let err = store.put_zip(&z, 1 << 20).unwrap_err().to_string();
            assert!(err.contains("escapes"), "{bad}: {err}");
        }
        assert!(matches!(
            store.put_zip(b"not a zip", 1 << 20),
            Err(StoreError::BadZip(_))
        ));
        let z = make_zip(&[("big", &[0u8; 2048], 0o644)]);
        assert!(matches!(
            store.put_zip(&z, 1024),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(store.unpacked("../../etc").is_err());
    }

    /// A zip whose central directory (and local header) claim a few bytes for an
    /// entry that really inflates to far more: the real bytes are counted.
    fn lying_zip(real: usize, claimed: u32) -> Vec<u8> {
        let data = vec![0u8; real];
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file(
            "bomb.bin",
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(&data).unwrap();
        let mut z = w.finish().unwrap().into_inner();
        let mut patched = 0;
        // Local file header: signature PK\x03\x04, uncompressed size at +22.
        // Central directory header: signature PK\x01\x02, uncompressed size at +24.
        for i in 0..z.len().saturating_sub(4) {
            let off = match &z[i..i + 4] {
                b"PK\x03\x04" => 22,
                b"PK\x01\x02" => 24,
                _ => continue,
            };
            let at = i + off;
            let declared = u32::from_le_bytes(z[at..at + 4].try_into().unwrap());
            assert_eq!(declared as usize, real, "found the real size field");
            z[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
            patched += 1;
        }
        assert_eq!(patched, 2, "one local and one central header patched");
        z
    }

    #[test]
    fn counts_real_bytes_not_declared_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let z = lying_zip(4 << 20, 16);
        // The archive itself says 16 bytes; the metadata the old check trusted agrees.
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(&z)).unwrap();
        assert_eq!(a.by_index(0).unwrap().size(), 16);
        let err = store.put_zip(&z, 1 << 20).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max } if max == 1 << 20),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "Unzipped size must be smaller than 1048576 bytes"
        );
        // Under the limit the same lying archive is accepted: its data is intact.
        store.put_zip(&z, 8 << 20).unwrap();
    }

    #[test]
    fn extraction_bounds_real_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let z = lying_zip(3 << 20, 10);
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let err = extract(&z, &out, 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        // No more than the limit (plus the one byte that proved it) reached the disk.
        let written = fs::metadata(out.join("bomb.bin")).unwrap().len();
        assert!(written <= (1 << 20) + 1, "{written}");
        // Several entries share one budget.
        let z = make_zip(&[("a", &[1u8; 600], 0o644), ("b", &[2u8; 600], 0o644)]);
        let out2 = dir.path().join("out2");
        fs::create_dir(&out2).unwrap();
        assert!(matches!(
            extract(&z, &out2, 1000),
            Err(StoreError::TooLarge { max: 1000 })
        ));
        let out3 = dir.path().join("out3");
        fs::create_dir(&out3).unwrap();
        extract(&z, &out3, 1200).unwrap();
        assert_eq!(fs::read(out3.join("b")).unwrap(), vec![2u8; 600]);
    }
}
