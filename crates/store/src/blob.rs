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
    root: PathBuf,
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
        extract(&bytes, tmp.path())?;
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

fn check_sha(sha: &str) -> Result<()> {
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

fn sync_dir(dir: &Path) -> Result<()> {
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

fn check_zip(bytes: &[u8], max_unzipped: u64) -> Result<()> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| StoreError::BadZip(e.to_string()))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let f = archive
            .by_index(i)
            .map_err(|e| StoreError::BadZip(e.to_string()))?;
        if safe_relative(f.name()).is_none() {
            return Err(StoreError::BadZip(format!(
                "entry {:?} escapes the bundle",
                f.name()
            )));
        }
        total = total.saturating_add(f.size());
        if total > max_unzipped {
            return Err(StoreError::TooLarge { max: max_unzipped });
        }
    }
    Ok(())
}

fn extract(bytes: &[u8], into: &Path) -> Result<()> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| StoreError::BadZip(e.to_string()))?;
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
        let mut buf = Vec::with_capacity(f.size().min(1 << 20) as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| StoreError::BadZip(e.to_string()))?;
        out.write_all(&buf).map_err(io_err(&path))?;
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
}
