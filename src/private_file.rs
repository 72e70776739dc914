//! Files only their owner may read — the agent's identity and applied pipelines, the CLI's sessions:
//! written through a temporary file renamed into place, so a crash never leaves half of one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `text` to `file` with mode 0600, creating its folder when missing.
pub fn write(file: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut partial_name = file.file_name().unwrap_or_default().to_os_string();
    partial_name.push(".partial");
    let partial = file.with_file_name(partial_name);
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    // `mode` applies only to a new file: a partial file left by a crash keeps its old mode otherwise.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&partial, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("nested").join("secret.json");
        write(&file, "first").expect("write");
        write(&file, "second").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "second");
        assert_eq!(std::fs::metadata(&file).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("nested").join("secret.json.partial").exists());
    }
}
