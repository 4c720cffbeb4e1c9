//! Lambda layers in the store: published versions (rows of `layer_versions`,
//! numbered from `layer_counters` so a number is never given twice), and the
//! merged layer trees instances see at `/opt`.
//!
//! A layer's zip is an ordinary content-addressed bundle of the [`BlobStore`];
//! a tree is built from the bundles' unpacked dirs, in order, later layers
//! replacing earlier files, under `<data>/opt/<hash of the ordered shas>`. Files
//! are hard links into the unpacked bundles (copies where linking fails), so a
//! tree costs directory entries, not data. Trees are made atomically (a temp dir
//! renamed into place) and shared by every function with the same layer list.

use crate::blob::{check_sha, check_zip, sync_dir};
use crate::{io_err, BlobStore, Db, Result, StoreError};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One stored layer version; `config` and `policy` are the caller's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayerVersion {
    pub layer: String,
    pub version: u64,
    pub config: String,
    pub policy: Option<String>,
}

impl Db {
    /// Store a new version of `layer` under the next number (fsynced before it
    /// returns); `config` makes the JSON for that number.
    pub fn publish_layer_version(
        &self,
        layer: &str,
        config: impl FnOnce(u64) -> String,
    ) -> Result<(u64, String)> {
        self.with(|c| {
            let tx = c.transaction()?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT last FROM layer_counters WHERE layer = ?1",
                    [layer],
                    |r| r.get(0),
                )
                .optional()?;
            let version = last.unwrap_or(0) as u64 + 1;
            let json = config(version);
            tx.execute(
                "INSERT INTO layer_counters(layer, last) VALUES (?1, ?2)
                 ON CONFLICT(layer) DO UPDATE SET last = excluded.last",
                params![layer, version as i64],
            )?;
            tx.execute(
                "INSERT INTO layer_versions(layer, version, config, policy) VALUES (?1, ?2, ?3, NULL)",
                params![layer, version as i64, json],
            )?;
            tx.commit()?;
            Ok((version, json))
        })
    }

    pub fn get_layer_version(
        &self,
        layer: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT layer, version, config, policy FROM layer_versions WHERE layer = ?1 AND version = ?2",
                params![layer, version as i64],
                row,
            )
            .optional()?)
        })
    }

    /// Versions of one layer (newest first), or of every layer (by name, newest
    /// first within each).
    pub fn list_layer_versions(&self, layer: Option<&str>) -> Result<Vec<StoredLayerVersion>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT layer, version, config, policy FROM layer_versions
                 WHERE ?1 IS NULL OR layer = ?1 ORDER BY layer, version DESC",
            )?;
            let rows = st.query_map([layer], row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Delete a version; its number stays taken. `false` when there was none.
    pub fn delete_layer_version(&self, layer: &str, version: u64) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM layer_versions WHERE layer = ?1 AND version = ?2",
                params![layer, version as i64],
            )? > 0)
        })
    }

    /// Replace a version's policy (`None`: no policy). `false` when the version
    /// does not exist.
    pub fn set_layer_policy(
        &self,
        layer: &str,
        version: u64,
        policy: Option<&str>,
    ) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE layer_versions SET policy = ?3 WHERE layer = ?1 AND version = ?2",
                params![layer, version as i64, policy],
            )? > 0)
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredLayerVersion> {
    Ok(StoredLayerVersion {
        layer: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        config: r.get(2)?,
        policy: r.get(3)?,
    })
}

impl BlobStore {
    /// The bytes a stored bundle inflates to (counted while inflating).
    pub fn unzipped_size(&self, sha: &str) -> Result<u64> {
        let bytes = self.read_zip(sha)?;
        check_zip(&bytes, u64::MAX - 1)
    }

    fn opt_root(&self) -> PathBuf {
        self.root
            .parent()
            .map_or_else(|| self.root.join("opt"), |data| data.join("opt"))
    }

    /// The name of the tree of these bundles, in this order.
    pub fn layer_tree_id(shas: &[String]) -> String {
        let mut h = Sha256::new();
        for s in shas {
            h.update(s.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The merged tree of these layer bundles, built on first use: each unpacked
    /// in order into one directory, a later layer's file replacing an earlier
    /// one's. Safe to call concurrently.
    pub fn layer_tree(&self, shas: &[String]) -> Result<PathBuf> {
        for s in shas {
            check_sha(s)?;
        }
        let root = self.opt_root();
        let dest = root.join(Self::layer_tree_id(shas));
        if dest.is_dir() {
            return Ok(dest);
        }
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&root)
            .map_err(io_err(&root))?;
        for sha in shas {
            let src = self.unpacked(sha)?;
            merge_tree(&src, tmp.path())?;
        }
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io_err(tmp.path()))?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &dest) {
            Ok(()) => {
                sync_dir(&root)?;
                Ok(dest)
            }
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp_path);
                Ok(dest)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                Err(StoreError::Io {
                    path: dest,
                    source: e,
                })
            }
        }
    }

    /// Remove every layer tree (and leftover temp dir) not named in `keep`
    /// (ids from [`BlobStore::layer_tree_id`]). Returns how many went.
    pub fn gc_layer_trees(&self, keep: &HashSet<String>) -> usize {
        let Ok(entries) = fs::read_dir(self.opt_root()) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            if fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Put `src`'s entries into `dst`: directories merged, files (hard-linked, else
/// copied) replacing whatever `dst` had at that path. `src` is an unpacked
/// bundle, which holds only directories and regular files.
fn merge_tree(src: &Path, dst: &Path) -> Result<()> {
    for e in fs::read_dir(src).map_err(io_err(src))? {
        let e = e.map_err(io_err(src))?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let ty = e.file_type().map_err(io_err(&from))?;
        let existing = fs::symlink_metadata(&to).ok();
        if ty.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    fs::remove_file(&to).map_err(io_err(&to))?;
                    fs::create_dir(&to).map_err(io_err(&to))?;
                }
                None => fs::create_dir(&to).map_err(io_err(&to))?,
            }
            merge_tree(&from, &to)?;
        } else if ty.is_file() {
            match existing {
                Some(m) if m.is_dir() => fs::remove_dir_all(&to).map_err(io_err(&to))?,
                Some(_) => fs::remove_file(&to).map_err(io_err(&to))?,
                None => {}
            }
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(io_err(&to))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn versions_are_numbered_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("nimbus.db")).unwrap();
        let (v1, _) = db
            .publish_layer_version("l", |n| format!("{{\"v\":{n}}}"))
            .unwrap();
        let (v2, _) = db
            .publish_layer_version("l", |n| format!("{{\"v\":{n}}}"))
            .unwrap();
        assert_eq!((v1, v2), (1, 2));
        assert!(db.delete_layer_version("l", 2).unwrap());
        assert!(db.delete_layer_version("l", 1).unwrap());
        assert!(!db.delete_layer_version("l", 1).unwrap());
        assert!(db.list_layer_versions(Some("l")).unwrap().is_empty());
        let (v3, json) = db
            .publish_layer_version("l", |n| format!("{{\"v\":{n}}}"))
            .unwrap();
        assert_eq!((v3, json.as_str()), (3, "{\"v\":3}"));
        assert!(db.set_layer_policy("l", 3, Some("{}")).unwrap());
        assert!(!db.set_layer_policy("l", 9, Some("{}")).unwrap());
        drop(db);
        let db = Db::open(&dir.path().join("nimbus.db")).unwrap();
        let got = db.get_layer_version("l", 3).unwrap().unwrap();
        assert_eq!(got.policy.as_deref(), Some("{}"));
        db.publish_layer_version("a", |_| "{}".into()).unwrap();
        let all: Vec<_> = db
            .list_layer_versions(None)
            .unwrap()
            .into_iter()
            .map(|v| (v.layer, v.version))
            .collect();
        assert_eq!(all, vec![("a".into(), 1), ("l".into(), 3)]);
    }

    #[test]
    fn later_layers_win_and_trees_are_shared_and_collected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let a = blobs
            .put_zip(
                &zip_of(&[
                    ("python/m.py", "A"),
                    ("bin/tool", "a"),
                    ("python/only_a.py", ""),
                ]),
                1 << 20,
            )
            .unwrap()
            .sha256;
        let b = blobs
            .put_zip(
                &zip_of(&[("python/m.py", "B"), ("python/only_b.py", "")]),
                1 << 20,
            )
            .unwrap()
            .sha256;
        assert_eq!(blobs.unzipped_size(&a).unwrap(), 2);
        let ab = blobs.layer_tree(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(fs::read_to_string(ab.join("python/m.py")).unwrap(), "B");
        assert!(ab.join("python/only_a.py").is_file());
        assert!(ab.join("python/only_b.py").is_file());
        assert_eq!(fs::read_to_string(ab.join("bin/tool")).unwrap(), "a");
        // The bundle's own unpacked file is untouched by the overwrite.
        assert_eq!(
            fs::read_to_string(blobs.unpacked(&a).unwrap().join("python/m.py")).unwrap(),
            "A"
        );
        let ba = blobs.layer_tree(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(fs::read_to_string(ba.join("python/m.py")).unwrap(), "A");
        assert_eq!(blobs.layer_tree(&[a.clone(), b.clone()]).unwrap(), ab);
        let keep: HashSet<String> = [BlobStore::layer_tree_id(&[a.clone(), b.clone()])].into();
        assert_eq!(blobs.gc_layer_trees(&keep), 1);
        assert!(ab.is_dir());
        assert!(!ba.exists());
        assert!(blobs.layer_tree(&["../x".into()]).is_err());
    }
}
