//! A line diff between two rendered configs (longest common subsequence), for comparing versions.

use serde::Serialize;

/// Configs longer than this many lines are compared as wholly different (the table is quadratic).
pub const MAX_LINES: usize = 4000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiffLine {
    /// `equal`, `removed` (only in the old config) or `added` (only in the new one).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub op: &'static str,
    pub text: String,
}

/// The lines of `old` and `new` in order, each marked equal, removed or added.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let line = |op, text: &str| DiffLine { op, text: text.to_string() };
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return a.iter().map(|l| line("removed", l)).chain(b.iter().map(|l| line("added", l))).collect();
    }
    // common[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut common = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i * width + j] = if a[i] == b[j] {
                common[(i + 1) * width + j + 1] + 1
            } else {
                common[(i + 1) * width + j].max(common[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            lines.push(line("equal", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if common[(i + 1) * width + j] >= common[i * width + j + 1] {
            lines.push(line("removed", a[i]));
            i += 1;
        } else {
            lines.push(line("added", b[j]));
            j += 1;
        }
    }
    lines.extend(a[i..].iter().map(|l| line("removed", l)));
    lines.extend(b[j..].iter().map(|l| line("added", l)));
    lines
}

/// The diff as unified-diff text lines (`' '`, `'-'`, `'+'` prefixes).
pub fn unified(lines: &[DiffLine]) -> String {
    lines
        .iter()
        .map(|l| {
            let mark = match l.op {
                "removed" => '-',
                "added" => '+',
                _ => ' ',
            };
            format!("{mark}{}\n", l.text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_and_the_rest_is_equal() {
        let old = "processors:\n  topk:\n    k: 10\nexporters: {}\n";
        let new = "processors:\n  topk:\n    k: 5\nexporters: {}\n";
        let lines = diff_lines(old, new);
        let ops: Vec<&str> = lines.iter().map(|l| l.op).collect();
        assert_eq!(ops, ["equal", "equal", "removed", "added", "equal"]);
        assert_eq!(unified(&lines), " processors:\n   topk:\n-    k: 10\n+    k: 5\n exporters: {}\n");
        assert!(diff_lines(old, old).iter().all(|l| l.op == "equal"));
    }

    #[test]
    fn lines_only_on_one_side_are_added_or_removed() {
        let ops: Vec<&str> = diff_lines("a\nb\n", "a\nb\nc\n").iter().map(|l| l.op).collect();
        assert_eq!(ops, ["equal", "equal", "added"]);
        let ops: Vec<&str> = diff_lines("x\na\n", "a\n").iter().map(|l| l.op).collect();
        assert_eq!(ops, ["removed", "equal"]);
    }
}
