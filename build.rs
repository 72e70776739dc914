//! Embeds the dashboard (`src/dashboard/`) in the binary: writes a table of every file there, each with
//! `include_bytes!`, so adding a file to the dashboard needs no change to the code that serves it.

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        // Hidden files (editor swap files, .DS_Store, …) are never part of the dashboard.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("dashboard");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    files_under(&root, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.strip_prefix(&root).expect("under the dashboard").to_string_lossy().replace('\\', "/");
        table.push_str(&format!("    ({name:?}, include_bytes!({:?}) as &[u8]),\n", file.display().to_string()));
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("dashboard_files.rs");
    std::fs::write(out, table).expect("write the dashboard table");
}
