//! Backup archives: a directory of framed record files and a `manifest.json`
//! that names each file with its size, record count and SHA-256.
//!
//! A record is a frame `[key_len: u32 BE][key][value_len: u32 BE][value]`,
//! the same frames `GET /v1/admin/log` streams, so a backup is the bytes the
//! node served, checked and written down.
//!
//! An archive is written under a temporary sibling name
//! (`.{name}.partial-{pid}`), every file and then that directory are
//! `fsync`ed, and only then is it renamed to its final name and the parent
//! directory synced. A directory with the final name is therefore always a
//! whole archive. A backup that fails removes its `.partial` directory; one
//! killed midway leaves it, and [`Archive::open`] refuses it (no manifest).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's name inside an archive directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// What `format` says in every manifest.
pub const FORMAT: &str = "larder-backup";
/// Version of the directory layout and frame format written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Largest key or value a frame may carry, in bytes: a corrupt length
/// must not make a reader allocate gigabytes.
pub const MAX_FRAME_PART_BYTES: u32 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} already exists and is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// One records file of an archive, as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub records: u64,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// `manifest.json`: the layout, what kind of store it holds (`kind`), its
/// files, and the store's own description (`meta`, flattened in).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest<M> {
    pub format: String,
    pub format_version: u32,
    pub kind: String,
    pub files: Vec<FileEntry>,
    #[serde(flatten)]
    pub meta: M,
}

/// One record: its key and its value.
pub type Frame = (Vec<u8>, Vec<u8>);

/// Appends a frame to `out`.
pub fn write_frame(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    for part in [key, value] {
        // Parts are bounded far below u32::MAX by MAX_FRAME_PART_BYTES.
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
}

/// Reads frames one at a time from any reader (a file, a response body).
pub struct FrameReader<R> {
    inner: R,
    path: PathBuf,
}

impl<R: Read> FrameReader<R> {
    /// `path` names the source in errors.
    pub fn new(inner: R, path: impl Into<PathBuf>) -> Self {
        FrameReader {
            inner,
            path: path.into(),
        }
    }

    /// The next `(key, value)`, `None` at a clean end.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ArchiveError> {
        let Some(key) = self.part(true)? else {
            return Ok(None);
        };
        let value = self
            .part(false)?
            .ok_or_else(|| self.invalid("ends inside a frame"))?;
        Ok(Some((key, value)))
    }

    fn part(&mut self, may_end: bool) -> Result<Option<Vec<u8>>, ArchiveError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < len.len() {
            match self.inner.read(&mut len[got..]) {
                Ok(0) if got == 0 && may_end => return Ok(None),
                Ok(0) => return Err(self.invalid("ends inside a frame")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("read", &self.path)(e)),
            }
        }
        let len = u32::from_be_bytes(len);
        if len > MAX_FRAME_PART_BYTES {
            return Err(self.invalid(&format!("a frame claims {len} bytes")));
        }
        let mut part = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut part)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => self.invalid("ends inside a frame"),
                _ => io_error("read", &self.path)(e),
            })?;
        Ok(Some(part))
    }

    fn invalid(&self, reason: &str) -> ArchiveError {
        ArchiveError::Invalid {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Every frame of an in-memory buffer (one page of `GET /v1/admin/log`).
pub fn frames(bytes: &[u8]) -> Result<Vec<Frame>, ArchiveError> {
    let mut reader = FrameReader::new(bytes, "response body");
    let mut out = vec![];
    while let Some(frame) = reader.next_frame()? {
        out.push(frame);
    }
    Ok(out)
}

/// Builds an archive under a temporary name; [`ArchiveWriter::finish`]
/// makes it appear, whole, at its final name.
pub struct ArchiveWriter {
    dest: PathBuf,
    tmp: PathBuf,
    files: Vec<FileEntry>,
}

impl ArchiveWriter {
    /// Refuses a `dest` that exists and is not empty. A leftover partial
    /// directory from an earlier attempt by this process id is replaced.
    pub fn create(dest: &Path) -> Result<Self, ArchiveError> {
        if !is_empty_or_absent(dest)? {
            return Err(ArchiveError::NotEmpty(dest.to_path_buf()));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| ArchiveError::Invalid {
                path: dest.to_path_buf(),
                reason: "names no directory".into(),
            })?
            .to_string_lossy();
        let tmp = parent_of(dest).join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error("remove", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_error("create", &tmp))?;
        Ok(ArchiveWriter {
            dest: dest.to_path_buf(),
            tmp,
            files: vec![],
        })
    }

    /// A new records file in the archive.
    pub fn file(&self, name: &str) -> Result<FileWriter, ArchiveError> {
        let path = self.tmp.join(name);
        let file = File::create(&path).map_err(io_error("create", &path))?;
        Ok(FileWriter {
            name: name.to_string(),
            path,
            out: BufWriter::new(file),
            hasher: Sha256::new(),
            bytes: 0,
            records: 0,
            frame: vec![],
        })
    }

    /// Flushes and syncs `file`, and lists it in the manifest.
    pub fn add(&mut self, file: FileWriter) -> Result<&FileEntry, ArchiveError> {
        let entry = file.close()?;
        self.files.push(entry);
        Ok(&self.files[self.files.len() - 1])
    }

    /// Writes and syncs the manifest and the directory, then renames it to
    /// its final name and syncs the parent.
    pub fn finish<M: Serialize>(
        mut self,
        kind: &str,
        meta: M,
    ) -> Result<Manifest<M>, ArchiveError> {
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            kind: kind.into(),
            files: std::mem::take(&mut self.files),
            meta,
        };
        let path = self.tmp.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ArchiveError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_synced(&path, &json)?;
        sync_dir(&self.tmp)?;
        if self.dest.exists() {
            // Empty (checked at create): rename(2) needs it gone or empty.
            std::fs::remove_dir(&self.dest).map_err(io_error("remove", &self.dest))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io_error("rename", &self.tmp))?;
        sync_dir(parent_of(&self.dest))?;
        Ok(manifest)
    }
}

/// An archive dropped before [`ArchiveWriter::finish`] (an error on the
/// way) takes its partial directory with it; after `finish` there is none.
impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A records file being written: frames, counted and hashed as they go.
pub struct FileWriter {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    records: u64,
    frame: Vec<u8>,
}

impl FileWriter {
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), ArchiveError> {
        self.frame.clear();
        write_frame(&mut self.frame, key, value);
        self.out
            .write_all(&self.frame)
            .map_err(io_error("write", &self.path))?;
        self.hasher.update(&self.frame);
        self.bytes += self.frame.len() as u64;
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    fn close(self) -> Result<FileEntry, ArchiveError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error("write", &self.path)(e.into_error()))?;
        file.sync_all().map_err(io_error("fsync", &self.path))?;
        Ok(FileEntry {
            name: self.name,
            bytes: self.bytes,
            records: self.records,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

/// An archive whose manifest and checksums were verified.
pub struct Archive<M> {
    dir: PathBuf,
    pub manifest: Manifest<M>,
}

impl<M: DeserializeOwned> Archive<M> {
    /// Reads the manifest, checks its format and `kind`, and every listed
    /// file's size and SHA-256.
    pub fn open(dir: &Path, kind: &str) -> Result<Self, ArchiveError> {
        let path = dir.join(MANIFEST_FILE);
        let invalid = |reason: String| ArchiveError::Invalid {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read(&path).map_err(io_error("read", &path))?;
        let manifest: Manifest<M> = serde_json::from_slice(&text)
            .map_err(|e| invalid(format!("not a backup manifest: {e}")))?;
        if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "format {} v{}; this build reads {FORMAT} v{FORMAT_VERSION}",
                manifest.format, manifest.format_version
            )));
        }
        if manifest.kind != kind {
            return Err(invalid(format!(
                "holds a {} backup, not {kind}",
                manifest.kind
            )));
        }
        for entry in &manifest.files {
            verify_file(&dir.join(&entry.name), entry)?;
        }
        Ok(Archive {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The entry of the file named `name`.
    pub fn entry(&self, name: &str) -> Result<&FileEntry, ArchiveError> {
        self.manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ArchiveError::Invalid {
                path: self.dir.join(MANIFEST_FILE),
                reason: format!("lists no file {name}"),
            })
    }

    /// Reads the frames of file `name` (verified by `open`).
    pub fn frames(&self, name: &str) -> Result<FrameReader<BufReader<File>>, ArchiveError> {
        self.entry(name)?;
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(io_error("open", &path))?;
        Ok(FrameReader::new(BufReader::new(file), path))
    }
}

fn verify_file(path: &Path, entry: &FileEntry) -> Result<(), ArchiveError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut reader = BufReader::new(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io_error("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha = hex(&hasher.finalize());
    if bytes != entry.bytes || sha != entry.sha256 {
        return Err(ArchiveError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "checksum mismatch: {bytes} bytes with sha256 {sha}, the manifest says {} bytes with sha256 {}",
                entry.bytes, entry.sha256
            ),
        });
    }
    Ok(())
}

/// Whether `dir` is absent or an empty directory (a file is not empty).
pub fn is_empty_or_absent(dir: &Path) -> Result<bool, ArchiveError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_error("list", dir)(e)),
    }
}

/// Writes `bytes` to `path` and `fsync`s the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut file = File::create(path).map_err(io_error("create", path))?;
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("fsync", path))
}

/// `fsync` of a directory, which makes its entries (new names) durable.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync", dir))
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meta {
        store: String,
    }

    fn write(dest: &Path, records: &[(&[u8], &[u8])]) -> Manifest<Meta> {
        let mut w = ArchiveWriter::create(dest).unwrap();
        let mut f = w.file("records.bin").unwrap();
        for (k, v) in records {
            f.push(k, v).unwrap();
        }
        w.add(f).unwrap();
        w.finish("test", Meta { store: "s".into() }).unwrap()
    }

    #[test]
    fn a_backup_abandoned_on_an_error_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let w = ArchiveWriter::create(&root.path().join("b")).unwrap();
        let mut f = w.file("records.bin").unwrap();
        f.push(b"k", b"v").unwrap();
        drop((f, w));
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_archive_reads_back_its_frames_and_leaves_no_partial_directory() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("b");
        let m = write(&dest, &[(b"k1", b"v1"), (b"", b"empty key")]);
        assert_eq!(m.files[0].records, 2);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        let a = Archive::<Meta>::open(&dest, "test").unwrap();
        assert_eq!(a.manifest.meta, Meta { store: "s".into() });
        let mut r = a.frames("records.bin").unwrap();
        assert_eq!(
            r.next_frame().unwrap(),
            Some((b"k1".to_vec(), b"v1".to_vec()))
        );
        assert_eq!(r.next_frame().unwrap().unwrap().1, b"empty key".to_vec());
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn a_changed_byte_or_another_kind_is_refused_and_a_full_target_too() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("b");
        write(&dest, &[(b"k1", b"v1")]);
        assert!(matches!(
            ArchiveWriter::create(&dest),
            Err(ArchiveError::NotEmpty(_))
        ));
        let err = Archive::<Meta>::open(&dest, "other").err().unwrap();
        assert!(err.to_string().contains("not other"), "{err}");
        let path = dest.join("records.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = Archive::<Meta>::open(&dest, "test").err().unwrap();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_an_end() {
        let mut buf = vec![];
        write_frame(&mut buf, b"key", b"value");
        buf.pop();
        assert!(frames(&buf).is_err());
        assert_eq!(frames(&[]).unwrap(), vec![]);
    }
}
