//! Limits on what Phoenix accepts from people and agents, where they are not configuration. Each is in
//! the limits table of `docs/OPERATIONS.md` and tested in `tests/api/limits.rs`; the request body size
//! is a setting (`server.body_limit_bytes`, 1 MiB).

/// Characters in the name of an experiment or a deployment.
pub const NAME_CHARS: usize = 200;

/// Characters in free text: an experiment's description, a version's notes, a template's description.
pub const TEXT_CHARS: usize = 10_000;

/// Labels on one agent, or in one label selector.
pub const LABELS: usize = 64;

/// Characters in a task type.
pub const TASK_TYPE_CHARS: usize = 100;

/// Nesting of JSON documents: serde_json's own recursion limit, which refuses deeper ones while parsing
/// (400), so a hostile body cannot exhaust the stack. Mirrored here for the tests and the docs.
pub const JSON_DEPTH: usize = 128;

/// The problem with a text field that is longer than `max` characters, if it is.
pub fn too_long(path: &str, text: &str, max: usize) -> Option<(String, String)> {
    (text.chars().count() > max).then(|| (path.to_string(), format!("must be at most {max} characters")))
}

/// The problem with a name: blank, or longer than [`NAME_CHARS`].
pub fn bad_name(path: &str, name: &str) -> Option<(String, String)> {
    (name.trim().is_empty() || name.chars().count() > NAME_CHARS)
        .then(|| (path.to_string(), format!("must be 1 to {NAME_CHARS} characters")))
}
