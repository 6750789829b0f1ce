//! Getting the bytes of a source safely: the directory walk and the bounded file read.
//!
//! A routing directory can hold whatever a repository holds. The walk follows symlinks (a
//! shared `routing/common -> ../common` is ordinary) but reads each directory once, however
//! many paths lead to it, so a symlink to a parent is reported once and never loops. Entries
//! that are not regular files (FIFOs, sockets, devices, also through a symlink) are skipped
//! with a note, since opening a FIFO waits for a writer forever and a device never ends. A
//! file is opened without blocking, checked again on the open descriptor (the path may have
//! been swapped since the walk), and read only up to `max_file_bytes`, so memory stays
//! bounded whatever the size the file claims.
//!
//! This module does not parse; [`super::load_text`] does, under the same [`Limits`].

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{is_ignored_name, is_yaml_file};

/// Bounds on what one source file may cost to read. A repository can hold anything under a
/// routing directory (a generated file, a symlink to `/dev/zero`); past these the file is
/// refused with the key to raise, and the other files still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes in one file. 4 MiB is a few thousand Istio objects, far beyond a hand-written
    /// file, and small enough that reading and parsing it stays well under a second.
    pub max_file_bytes: u64,
    /// YAML documents in one file (serde-saphyr's own default, which already guards against
    /// a `---` storm).
    pub max_documents: usize,
    /// Mappings, sequences and scalars in one file.
    pub max_nodes: usize,
    /// Nesting depth; Istio objects are about 10 deep, and the parser recurses per level.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 4 << 20,
            max_documents: 1024,
            max_nodes: 250_000,
            max_depth: 64,
        }
    }
}

/// Something the walk skipped, said once in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub path: PathBuf,
    pub message: String,
}

/// The YAML files under a directory, sorted, and what was skipped on the way.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    pub notes: Vec<Note>,
}

/// Every YAML file under `dir`, following symlinks, each directory read once. A missing or
/// unreadable `dir` itself is an error (a typo in `sources:` must not look like "everything
/// was deleted"); problems below it are notes.
pub fn list_yaml_files(dir: &Path) -> std::io::Result<Listing> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut walk = Walk::default();
    // The directories above the source: a symlink to one of them is a loop from the start.
    let canonical = std::fs::canonicalize(dir)?;
    for a in canonical.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(a) {
            walk.stack.push((m.dev(), m.ino()));
        }
    }
    walk.seen
        .insert((meta.dev(), meta.ino()), dir.to_path_buf());
    walk.stack.push((meta.dev(), meta.ino()));
    walk.dir(dir)?;
    walk.out.files.sort();
    Ok(walk.out)
}

#[derive(Default)]
struct Walk {
    /// Directories read so far, by device and inode, with the path they were read as.
    seen: std::collections::BTreeMap<(u64, u64), PathBuf>,
    /// The directories that contain the one being read (and those above the source).
    stack: Vec<(u64, u64)>,
    out: Listing,
}

impl Walk {
    fn dir(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_ignored_name(&name) || name.starts_with('.') {
                continue;
            }
            let linked = entry.file_type()?.is_symlink();
            // Follows the symlink; a dangling one only matters if it looks like a source.
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if is_yaml_file(&path) {
                        self.note(&path, format!("cannot read ({e}); skipped"));
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                self.enter(&path, &meta);
            } else if is_yaml_file(&path) {
                match special_kind(&meta) {
                    None => self.out.files.push(path),
                    Some(kind) => {
                        let via = if linked { ", through a symlink" } else { "" };
                        self.note(&path, format!("not a regular file ({kind}{via}); skipped"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads a directory reached by `path`, unless that would loop or read it twice.
    fn enter(&mut self, path: &Path, meta: &Metadata) {
        let id = (meta.dev(), meta.ino());
        let target = || std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&id) {
            let message = format!(
                "a symlink to {}, which contains it: a loop; skipped",
                target().display()
            );
            self.note(path, message);
            return;
        }
        if let Some(first) = self.seen.get(&id) {
            let message = format!(
                "a symlink to {}, already read as {}; skipped",
                target().display(),
                first.display()
            );
            self.note(path, message);
            return;
        }
        self.seen.insert(id, path.to_path_buf());
        self.stack.push(id);
        if let Err(e) = self.dir(path) {
            self.note(path, format!("cannot read directory ({e}); skipped"));
        }
        self.stack.pop();
    }

    fn note(&mut self, path: &Path, message: String) {
        self.out.notes.push(Note {
            path: path.to_path_buf(),
            message,
        });
    }
}

/// What a non-regular file is, in words; `None` for a regular file.
fn special_kind(meta: &Metadata) -> Option<&'static str> {
    let ty = meta.file_type();
    if ty.is_file() {
        None
    } else if ty.is_fifo() {
        Some("a FIFO")
    } else if ty.is_socket() {
        Some("a socket")
    } else if ty.is_char_device() {
        Some("a character device")
    } else if ty.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

/// Why a source file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file ({0}); skipped")]
    Special(String),
    #[error(
        "{size} bytes is over the limit of {limit} (`max_file_bytes`): split the file, or raise limits.max_file_bytes in meshloop.yaml"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("not UTF-8 text")]
    NotText,
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// A skipped special file is a note, not an error in the file.
    pub fn is_skip(&self) -> bool {
        matches!(self, ReadError::Special(_))
    }
}

/// Reads a source file as text: never blocks on a FIFO, never reads past the limit.
pub fn read_text(path: &Path, limits: &Limits) -> Result<String, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading waits for a writer; non-blocking, the open returns and the
        // descriptor is refused below. It changes nothing for regular files.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = special_kind(&meta) {
        let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let via = if linked { ", through a symlink" } else { "" };
        return Err(ReadError::Special(format!("{kind}{via}")));
    }
    let limit = limits.max_file_bytes;
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    read_bounded(file, limit)
}

/// The stat said the size is fine; the read still stops past the limit (the file may grow, or
/// be one of those that report size 0 and stream forever).
fn read_bounded(file: File, limit: u64) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_to_a_parent_is_read_once_and_noted() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("routing");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.yaml"), "a: 1\n").unwrap();
        std::fs::write(root.join("sub/b.yaml"), "b: 1\n").unwrap();
        std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
        let l = list_yaml_files(&root).unwrap();
        assert_eq!(l.files, vec![root.join("a.yaml"), root.join("sub/b.yaml")]);
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert_eq!(l.notes[0].path, root.join("sub/up"));
        assert!(
            l.notes[0].message.ends_with("a loop; skipped"),
            "{:?}",
            l.notes
        );
    }

    #[test]
    fn special_files_are_noted_and_never_opened() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("a.yaml"), "a: 1\n").unwrap();
        let fifo = root.join("x.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink("/dev/zero", root.join("z.yaml")).unwrap();
        let l = list_yaml_files(root).unwrap();
        assert_eq!(l.files, vec![root.join("a.yaml")]);
        let notes: Vec<String> = l.notes.iter().map(|n| n.message.clone()).collect();
        assert_eq!(
            notes,
            vec![
                "not a regular file (a FIFO); skipped",
                "not a regular file (a character device, through a symlink); skipped"
            ]
        );
        // Named directly, they are refused without blocking or reading.
        let limits = Limits::default();
        assert!(read_text(&fifo, &limits).unwrap_err().is_skip());
        assert!(
            read_text(&root.join("z.yaml"), &limits)
                .unwrap_err()
                .is_skip()
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_the_key() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big.yaml");
        std::fs::write(&f, vec![b'#'; 2048]).unwrap();
        let limits = Limits {
            max_file_bytes: 1024,
            ..Limits::default()
        };
        let e = read_text(&f, &limits).unwrap_err().to_string();
        assert!(
            e.contains("over the limit of 1024 (`max_file_bytes`)"),
            "{e}"
        );
        assert_eq!(read_text(&f, &Limits::default()).unwrap().len(), 2048);
    }
}
