//! The k3s join token: read from `docker.token_file` or the `K3S_TOKEN` environment
//! variable (which `commands` reads once and passes in), and kept in a type that never
//! prints it. It goes to the worker container's environment, and `init --from-k3d` writes
//! the token it read from k3d's labels to a 0600 token file; nowhere else.

use super::DockerError;
use crate::config::{self, files, files::ReadError};
use std::fmt;
use std::path::Path;

/// A token file is one line; anything this large is not one.
const MAX_TOKEN_BYTES: u64 = 4096;

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(String);

impl JoinToken {
    /// Checks a token given as text (from the environment): one non-empty line.
    pub fn new(text: &str) -> Result<JoinToken, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the join token is empty".into());
        }
        if t.contains(['\r', '\n', '\0']) {
            return Err("the join token must be a single line".into());
        }
        Ok(JoinToken(t.to_string()))
    }

    /// The token itself; only the container environment may receive it.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

/// Writes the token as a token file `load_token` reads: one line, mode 0600, created without
/// following a symlink; an existing file is an `AlreadyExists` error unless `replace`.
pub fn write_token_file(path: &Path, token: &JoinToken, replace: bool) -> std::io::Result<()> {
    crate::config::files::write_new_file(path, format!("{}\n", token.0).as_bytes(), 0o600, replace)
}

/// The token from the file if one is configured, else from `K3S_TOKEN`.
pub fn load_token(file: Option<&Path>, env: Option<&str>) -> Result<JoinToken, DockerError> {
    let setup = |m: String| DockerError::Setup(m);
    if let Some(path) = file {
        let shown = path.display();
        // Checked on the file opened (after links): world-writable is refused, since
        // anyone could then make workers join another cluster.
        let bytes = files::read_checked(path, MAX_TOKEN_BYTES).map_err(|e| match e {
            ReadError::Io(e) => setup(format!("cannot read docker.token_file {shown}: {e}")),
            ReadError::WorldWritable => setup(format!(
                "docker.token_file: {}",
                config::ConfigError::WorldWritable(path.into())
            )),
            ReadError::TooLarge(n) => setup(format!(
                "docker.token_file {shown} is {n} bytes; a join token is one short line"
            )),
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| setup(format!("docker.token_file {shown} is not UTF-8 text")))?;
        return JoinToken::new(&text).map_err(|m| setup(format!("docker.token_file {shown}: {m}")));
    }
    match env {
        Some(v) => JoinToken::new(v).map_err(|m| setup(format!("K3S_TOKEN: {m}"))),
        None => Err(setup(
            "no join token: set docker.token_file or the K3S_TOKEN environment variable".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("k3s-scale-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = JoinToken::new("K10abc::server:s3cret").unwrap();
        assert_eq!(format!("{t:?}"), "JoinToken(<redacted>)");
        assert_eq!(t.expose(), "K10abc::server:s3cret");
    }

    #[test]
    fn the_file_wins_over_the_environment_and_is_trimmed() {
        let d = dir("file");
        let p = d.join("token");
        std::fs::write(&p, "from-file\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = load_token(Some(&p), Some("from-env")).unwrap();
        assert_eq!(t.expose(), "from-file");
        assert_eq!(
            load_token(None, Some(" from-env\n")).unwrap().expose(),
            "from-env"
        );
    }

    #[test]
    fn a_written_token_file_reads_back_and_is_0600() {
        let d = dir("write");
        let p = d.join("k3s-token");
        let t = JoinToken::new("K10abc::server:s3cret").unwrap();
        write_token_file(&p, &t, false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_token(Some(&p), None).unwrap(), t);
        assert!(write_token_file(&p, &t, false).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        let d = dir("bad");
        let p = d.join("token");
        std::fs::write(&p, "s3cret-one\ns3cret-two\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_token(Some(&p), None).unwrap_err().to_string();
        assert!(e.contains("single line") && !e.contains("s3cret"), "{e}");

        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load_token(Some(&p), None).unwrap_err().to_string();
        assert!(e.contains("world-writable") && !e.contains("s3cret"), "{e}");

        let e = load_token(Some(&d.join("missing")), Some("s3cret"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker.token_file") && !e.contains("s3cret"),
            "{e}"
        );

        let e = load_token(None, None).unwrap_err().to_string();
        assert!(e.contains("K3S_TOKEN"), "{e}");
        let e = load_token(None, Some("  ")).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
