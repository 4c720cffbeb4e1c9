//! Packaging a code directory into a zip, deterministically (sorted entries, fixed
//! timestamps) so unchanged code hashes to the same sha256 and is stored once.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// Directories that never belong in a bundle.
const SKIP_DIRS: &[&str] = &[".git", "__pycache__", ".nimbus", ".serverless", ".aws-sam"];

/// Read a zip as-is, or zip a directory.
pub fn bundle(path: &Path) -> Result<Vec<u8>> {
    bundle_matching(path, &|_| true)
}

/// Zip the files of a directory for which `keep` (given the `/`-separated path
/// relative to it) says yes; a zip file is read as-is.
pub fn bundle_matching(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !bytes.starts_with(b"PK") {
            bail!("{} is neither a directory nor a zip file", path.display());
        }
        return Ok(bytes);
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(e.file_type().is_dir() && SKIP_DIRS.iter().any(|s| e.file_name() == *s))
        })
    {
        let entry = entry.with_context(|| format!("cannot walk {}", path.display()))?;
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(path).unwrap_or(entry.path());
            if keep(&rel.to_string_lossy().replace('\\', "/")) {
                files.push(entry);
            }
        }
    }
    let total: u64 = files
        .iter()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = if total > 8 * 1024 * 1024 {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("packaging {bar:30} {bytes}/{total_bytes} {msg}")
                .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut buf = Vec::new();
    for e in files {
        let rel = e.path().strip_prefix(path).expect("under root");
        let name = rel.to_string_lossy().replace('\\', "/");
        let mode = e
            .metadata()
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode & 0o777)
            .last_modified_time(zip::DateTime::default());
        w.start_file(name, opts)?;
        buf.clear();
        std::fs::File::open(e.path())
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", e.path().display()))?;
        w.write_all(&buf)?;
        bar.inc(buf.len() as u64);
    }
    bar.finish_and_clear();
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "x=1").unwrap();
        std::fs::create_dir(dir.path().join("__pycache__")).unwrap();
        std::fs::write(dir.path().join("__pycache__/app.pyc"), "junk").unwrap();
        let a = bundle(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(dir.path().join("app.py"), "x=1").unwrap();
        let b = bundle(dir.path()).unwrap();
        assert_eq!(a, b);
        let z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        assert_eq!(z.len(), 1, "pycache skipped");
    }
}
