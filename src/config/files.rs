//! How a root-run k3s-scale touches files. Its own files (lock, state, metrics textfile and
//! their temp files) are never opened through a symlink at their last component
//! (O_NOFOLLOW), temp files are created exclusively under unguessable names, and the state
//! and lock folders must be ones no other user can write. Files it only reads (config,
//! join token, Prometheus credentials and CA) are judged on the file actually opened.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a state or lock folder k3s-scale creates: only its user may look inside.
pub const PRIVATE_FOLDER_MODE: u32 = 0o700;
/// Mode of a metrics folder k3s-scale creates: node-exporter runs as another user and
/// must read the textfile.
pub const SHARED_FOLDER_MODE: u32 = 0o755;
/// The longest part of a file name a temp name repeats: `.<name>.tmp.<pid>.<32 hex>` must
/// fit NAME_MAX (255 bytes on Linux file systems) whatever the target's name.
const TEMP_NAME_KEEP: usize = 180;
/// Where unguessable bytes come from (present even under systemd's PrivateDevices=yes).
const RANDOM_SOURCE: &str = "/dev/urandom";

/// A file k3s-scale will not use, or could not, with the path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is unsafe or unusable as given (a link, a folder where a file belongs, a
    /// folder others can write): a configuration problem, exit 2.
    #[error("refusing {}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    /// The file system failed (disk full, permission denied, I/O error).
    #[error("{path}: {1}", path = .0.display())]
    Io(PathBuf, #[source] io::Error),
}

impl FileError {
    fn refused(path: &Path, reason: impl Into<String>) -> FileError {
        FileError::Refused {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An error of `open`/`mkdir`/`rename` on `path`: the ones that mean "this path is
    /// wrong" become refusals (exit 2), the rest stay I/O errors.
    fn from_io(path: &Path, e: io::Error) -> FileError {
        let reason = match e.raw_os_error() {
            Some(libc::ELOOP) => {
                "it is a symbolic link, and k3s-scale does not follow links for the files it \
                 writes (put the file itself there, or point the config at the link's target)"
                    .to_string()
            }
            Some(libc::EISDIR) => "it is a folder, not a file".to_string(),
            Some(libc::ENOTDIR) => "a part of the path before the file name is not a folder".into(),
            Some(libc::ENAMETOOLONG) => format!("the path or a name in it is too long ({e})"),
            _ => return FileError::Io(path.into(), e),
        };
        FileError::refused(path, reason)
    }

    pub fn path(&self) -> &Path {
        match self {
            FileError::Refused { path, .. } | FileError::Io(path, _) => path,
        }
    }
}

/// Who else may write the folder a file goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// State and lock: created 0700; an existing one must be owned by root or this user
    /// and writable by no one else, and so must every folder above it (a sticky one, like
    /// /tmp, may be writable by all: no one else can move a folder out of it).
    Private,
    /// The metrics textfile collector's folder, which node-exporter's setup may share: created
    /// 0755, not checked; the file is still never written through a link.
    Shared,
}

/// The parent folder of `path` ("." for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes sure the folder of `path` exists, creating missing folders with the mode of
/// `kind`, and (Private) that no other user can write it.
pub fn prepare_folder(path: &Path, kind: Folder) -> Result<PathBuf, FileError> {
    let dir = folder_of(path);
    let mode = match kind {
        Folder::Private => PRIVATE_FOLDER_MODE,
        Folder::Shared => SHARED_FOLDER_MODE,
    };
    create_folders(&dir, mode)?;
    if kind == Folder::Private {
        check_private_folder(&dir, path)?;
    }
    Ok(dir)
}

/// Creates `dir` and its missing parents, each with exactly `mode` (whatever the umask).
/// Folders that exist are left as they are.
fn create_folders(dir: &Path, mode: u32) -> Result<(), FileError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(FileError::from_io(d, e)),
        }
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(d) {
            Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(mode))
                .map_err(|e| FileError::Io(d.into(), e))?,
            // Another run made it meanwhile: it is checked like any existing folder.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FileError::from_io(d, e)),
        }
    }
    Ok(())
}

/// The users a private folder may belong to: root, and the user this process runs as.
/// The effective uid is the owner of /proc/self (std has no geteuid, and this keeps
/// src/ free of `unsafe`); without /proc only root is trusted.
fn trusted_owners() -> [u32; 2] {
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    [0, me]
}

/// ssh's rule for a key's folder, applied to the state and lock folder: refuse a folder
/// another user owns or can write, since they could plant a link or a file at a name
/// k3s-scale is about to use; the folders above it likewise, except that a sticky folder
/// (/tmp) may be writable by all.
pub fn check_private_folder(dir: &Path, file: &Path) -> Result<(), FileError> {
    let real = std::fs::canonicalize(dir).map_err(|e| FileError::from_io(dir, e))?;
    let owners = trusted_owners();
    let refuse = |why: String| {
        FileError::refused(
            dir,
            format!(
                "{why}; another user could then plant a link or a file where k3s-scale \
                 writes {} (use a folder owned by root and writable only by its owner, \
                 e.g. chmod 700)",
                file.display()
            ),
        )
    };
    let meta = std::fs::metadata(&real).map_err(|e| FileError::Io(dir.into(), e))?;
    if !meta.is_dir() {
        return Err(FileError::refused(dir, "it is not a folder"));
    }
    if let Some(why) = foreign_owner(&meta, &owners) {
        return Err(refuse(format!("the folder {why}")));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "the folder is writable by {} (mode {:o}){}",
            writers(meta.mode()),
            meta.mode() & 0o7777,
            if meta.mode() & 0o1000 != 0 {
                ", and the sticky bit does not stop others from creating names in it"
            } else {
                ""
            }
        )));
    }
    for above in real.ancestors().skip(1) {
        let m = std::fs::metadata(above).map_err(|e| FileError::Io(above.into(), e))?;
        if let Some(why) = foreign_owner(&m, &owners) {
            return Err(refuse(format!(
                "the folder above it, {}, {why}",
                above.display()
            )));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(refuse(format!(
                "the folder above it, {}, is writable by {} without the sticky bit (mode {:o}), \
                 so the folder could be moved away and replaced",
                above.display(),
                writers(m.mode()),
                m.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

fn foreign_owner(meta: &Metadata, owners: &[u32]) -> Option<String> {
    (!owners.contains(&meta.uid())).then(|| {
        format!(
            "is owned by uid {}, not by root or the user running k3s-scale (uid {})",
            meta.uid(),
            owners[owners.len() - 1]
        )
    })
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        _ => "all users",
    }
}

/// What kind of thing a non-regular file is, for an error message.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

fn require_regular(path: &Path, meta: &Metadata) -> Result<(), FileError> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(FileError::refused(
            path,
            format!(
                "it is {}, where k3s-scale keeps a regular file",
                kind_of(meta)
            ),
        ))
    }
}

/// Opens one of k3s-scale's own files for reading (the state): in a checked private
/// folder, never through a link, never blocking on a FIFO. None when it does not exist.
pub fn open_own(path: &Path) -> Result<Option<(File, Metadata)>, FileError> {
    let dir = folder_of(path);
    match std::fs::symlink_metadata(&dir) {
        // No folder, no file: nothing to check yet (the first write creates it 0700).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::from_io(&dir, e)),
        Ok(_) => check_private_folder(&dir, path)?,
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::from_io(path, e)),
    };
    let meta = file.metadata().map_err(|e| FileError::Io(path.into(), e))?;
    require_regular(path, &meta)?;
    Ok(Some((file, meta)))
}

/// Opens (creating it with `mode` if missing) one of k3s-scale's own files for reading and
/// writing, never through a link, in a checked private folder: the lock file.
pub fn open_own_rw(path: &Path, mode: u32) -> Result<File, FileError> {
    prepare_folder(path, Folder::Private)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileError::from_io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::Io(path.into(), e))?;
    require_regular(path, &meta)?;
    Ok(file)
}

/// 16 bytes from the kernel's random source, as 32 hex digits: a temp name no one can
/// guess and plant a file at beforehand.
pub fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 16];
    File::open(RANDOM_SOURCE)?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `.<name>.tmp.` with the name cut to `TEMP_NAME_KEEP` bytes: what every temp name of a
/// write to `name` starts with.
fn temp_prefix(name: &OsStr) -> Vec<u8> {
    let b = name.as_bytes();
    let mut p = b".".to_vec();
    p.extend_from_slice(&b[..b.len().min(TEMP_NAME_KEEP)]);
    p.extend_from_slice(b".tmp.");
    p
}

/// Writes `bytes` to `path` through a temp file and a rename. The temp file is created
/// exclusively (O_EXCL never follows a link) under `.<name>.tmp.<pid>.<random>`, gets
/// exactly `mode`, is synced and renamed over `path` (rename replaces a link, it does
/// not write through it); the folder is synced too. A crash leaves either the old or the
/// new file, whole.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    kind: Folder,
) -> Result<(), FileError> {
    let name = path
        .file_name()
        .ok_or_else(|| FileError::refused(path, "the path names no file"))?;
    let dir = prepare_folder(path, kind)?;
    remove_stale_temps(&dir, name);
    let random = random_hex().map_err(|e| {
        FileError::Io(
            path.into(),
            io::Error::new(e.kind(), format!("{RANDOM_SOURCE}: {e}")),
        )
    })?;
    let mut tmp_name = temp_prefix(name);
    tmp_name.extend_from_slice(format!("{}.{random}", std::process::id()).as_bytes());
    let tmp = dir.join(OsString::from_vec(tmp_name));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| FileError::from_io(&tmp, e))?;
    let result = (|| {
        // Exactly `mode`, not `mode` less the umask: node-exporter must read the textfile.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::from_io(path, e));
    }
    Ok(())
}

/// Removes the temp files that writes killed half-way (kill -9, power loss) left beside
/// `name`: `.<name>.tmp.<pid>[.<random>]` of a process that is gone. Each would otherwise
/// stay forever, as large as the file. A live process's temp file is its write in
/// progress. Removing a name never follows a link.
fn remove_stale_temps(dir: &Path, name: &OsStr) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(&prefix[..]) else {
            continue;
        };
        let pid = rest.split(|b| *b == b'.').next().unwrap_or_default();
        let Some(pid) = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_file(e.path()) {
                Ok(()) => log::info!(
                    "removed {}, left by a write that was cut short",
                    e.path().display()
                ),
                Err(err) => log::debug!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
}

/// Writes a new file with exactly `mode`, never following a symlink at `path` (`init`'s
/// config and token files). Without `replace`, anything already at `path` (a file, a
/// dangling symlink) is an `AlreadyExists` error and stays untouched: O_CREAT|O_EXCL does
/// not follow a symlink. With `replace`, the bytes go to a fresh temp file beside it
/// (`.<name>.new.<pid>.<random>`, O_EXCL too) that is then renamed over `path`: a rename
/// replaces a symlink, it does not write through it.
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> io::Result<()> {
    // Only a file this call created is removed when a later step fails.
    let create = |p: &Path| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)?;
        // The umask may have taken bits away from `mode`; set it exactly.
        let r = f
            .set_permissions(Permissions::from_mode(mode))
            .and_then(|()| f.write_all(bytes))
            .and_then(|()| f.sync_all());
        if r.is_err() {
            let _ = std::fs::remove_file(p);
        }
        r
    };
    if !replace {
        return create(path);
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = b".".to_vec();
    tmp_name.extend_from_slice(&name.as_bytes()[..name.len().min(TEMP_NAME_KEEP)]);
    tmp_name.extend_from_slice(format!(".new.{}.{}", std::process::id(), random_hex()?).as_bytes());
    let tmp = folder_of(path).join(OsString::from_vec(tmp_name));
    create(&tmp)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Why a file the config names could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// Anyone on the host can write it (mode of the file opened, after links).
    WorldWritable,
    /// Larger than the limit (bytes found, at least).
    TooLarge(u64),
}

/// Reads a file the operator points k3s-scale at (config, join token, credentials, CA):
/// links are followed, but the checks are made on the file actually opened, so a link
/// cannot hide a world-writable target, and what is read is what was checked. At most
/// `max` bytes are read, whatever the file claims to hold (/dev/zero claims 0).
pub fn read_checked(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(ReadError::WorldWritable);
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("k3s-scale-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn folder_modes_decide_what_is_refused() {
        let d = tmpdir("modes");
        let f = d.join("x/state.json");
        // (mode of the state folder, refused?, a word of the reason)
        for (m, refused, word) in [
            (0o700, false, ""),
            (0o755, false, ""),
            (0o750, false, ""),
            (0o770, true, "its group"),
            (0o777, true, "all users"),
            (0o1777, true, "sticky bit"),
            (0o1733, true, "all users"),
            (0o2775, true, "its group"),
        ] {
            std::fs::create_dir_all(d.join("x")).unwrap();
            std::fs::set_permissions(d.join("x"), Permissions::from_mode(m)).unwrap();
            match check_private_folder(&d.join("x"), &f) {
                Ok(()) => assert!(!refused, "{m:o} accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(refused, "{m:o}: {e}");
                    assert!(
                        e.contains(word) && e.contains(&d.join("x").display().to_string()),
                        "{e}"
                    );
                    assert!(e.contains(&format!("{m:o}")), "{e}");
                }
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn created_folders_get_their_mode_whatever_the_umask_and_existing_ones_are_kept() {
        let d = tmpdir("create");
        let p = d.join("a/b/state.json");
        prepare_folder(&p, Folder::Private).unwrap();
        assert_eq!(mode(&d.join("a")), 0o700);
        assert_eq!(mode(&d.join("a/b")), 0o700);
        let m = d.join("m/k3s-scale.prom");
        prepare_folder(&m, Folder::Shared).unwrap();
        assert_eq!(mode(&d.join("m")), 0o755);
        std::fs::set_permissions(d.join("m"), Permissions::from_mode(0o1777)).unwrap();
        prepare_folder(&m, Folder::Shared).expect("a shared folder is not checked");
        assert_eq!(
            mode(&d.join("m")),
            0o1777,
            "an existing folder is left alone"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_link_or_a_folder_at_an_own_files_name_is_refused() {
        let d = tmpdir("link");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let lock = d.join("run.lock");
        symlink(&victim, &lock).unwrap();
        let e = open_own_rw(&lock, 0o600).unwrap_err();
        assert!(matches!(e, FileError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_own(&lock).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("run.lock"), "{e}");
        std::fs::create_dir(d.join("dir.lock")).unwrap();
        let e = open_own_rw(&d.join("dir.lock"), 0o600)
            .unwrap_err()
            .to_string();
        assert!(e.contains("folder"), "{e}");
        let e = open_own(&d.join("dir.lock")).unwrap_err().to_string();
        assert!(e.contains("a folder"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_writes_replace_a_link_never_write_through_it_and_leave_no_temp() {
        let d = tmpdir("atomic");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let p = d.join("k3s-scale.prom");
        symlink(&victim, &p).unwrap();
        write_atomically(&p, b"new", 0o644, Folder::Shared).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o644);
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temp_names_are_unguessable_and_fit_a_long_name() {
        let a = random_hex().unwrap();
        let b = random_hex().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let d = tmpdir("long");
        let p = d.join("s".repeat(250));
        write_atomically(&p, b"{}", 0o600, Folder::Private).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temps_of_dead_writers_go_in_both_spellings() {
        let d = tmpdir("stale");
        let p = d.join("state.json");
        // PID 0 is never a process.
        let old = d.join(".state.json.tmp.0");
        let new = d.join(".state.json.tmp.0.00112233445566778899aabbccddeeff");
        let unrelated = d.join(".other.json.tmp.0");
        for f in [&old, &new, &unrelated] {
            std::fs::write(f, "x").unwrap();
        }
        write_atomically(&p, b"{}", 0o600, Folder::Private).unwrap();
        assert!(!old.exists() && !new.exists());
        assert!(unrelated.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn new_files_get_their_mode_never_overwrite_and_never_follow_a_symlink() {
        let d = std::env::temp_dir().join(format!("k3s-scale-newfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("token");
        write_new_file(&p, b"one", 0o600, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        let e = write_new_file(&p, b"two", 0o600, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_new_file(&p, b"two", 0o640, true).unwrap();
        assert_eq!(
            (std::fs::read(&p).unwrap(), mode(&p)),
            (b"two".to_vec(), 0o640)
        );
        // A symlink planted at the path: refused without replace, replaced (not followed)
        // with it; its target is never written.
        let target = d.join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_new_file(&link, b"x", 0o600, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nothing"), &dangling).unwrap();
        assert!(write_new_file(&dangling, b"x", 0o600, false).is_err());
        assert!(!d.join("nothing").exists());
        write_new_file(&link, b"x", 0o600, true).unwrap();
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            4,
            "token, elsewhere, link, dangling; no temp file left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reads_judge_the_target_of_a_link_and_stop_at_the_limit() {
        let d = tmpdir("read");
        let target = d.join("target");
        std::fs::write(&target, "abc").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o666)).unwrap();
        let link = d.join("link");
        symlink(&target, &link).unwrap();
        assert!(matches!(
            read_checked(&link, 10),
            Err(ReadError::WorldWritable)
        ));
        std::fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_checked(&link, 10).unwrap(), b"abc");
        assert!(matches!(
            read_checked(&link, 2),
            Err(ReadError::TooLarge(3))
        ));
        // A file that reports size 0 and holds more.
        assert!(matches!(
            read_checked(Path::new("/proc/self/status"), 100),
            Err(ReadError::TooLarge(101))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
