//! How commands print: `-o json` (exactly the API's object), `-o yaml`, or a table that fits the
//! terminal. Colours only on a terminal and never with `NO_COLOR`.

use std::io::IsTerminal;

use serde_json::Value;

use super::error::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A table's column: its heading and where its value is in each item (a JSON pointer).
pub struct Column {
    pub heading: &'static str,
    pub pointer: &'static str,
}

pub const fn col(heading: &'static str, pointer: &'static str) -> Column {
    Column { heading, pointer }
}

/// Prints `value` as asked. On a table, a list (`{items}`) is a row per item and one object is a field
/// per line.
pub fn print(value: &Value, format: Format, columns: &[Column]) -> Result<(), CliError> {
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(value).map_err(|e| CliError::Server(e.to_string()))?)
        }
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value).map_err(|e| CliError::Server(e.to_string()))?),
        Format::Table => match value.get("items").and_then(Value::as_array) {
            Some(items) => print!("{}", table(&items.iter().collect::<Vec<_>>(), columns, terminal_width())),
            None => print!("{}", detail(value, columns, terminal_width())),
        },
    }
    Ok(())
}

fn cell(item: &Value, pointer: &str) -> String {
    match item.pointer(pointer) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            // Whole numbers print without a fraction (88, not 88.0); others with two decimals.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (None, Some(f)) => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// The rows, columns padded; the widest column is cut (with `…`) until the table fits `width`.
pub fn table(items: &[&Value], columns: &[Column], width: usize) -> String {
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.heading.to_string()).collect()];
    rows.extend(items.iter().map(|item| columns.iter().map(|c| cell(item, c.pointer)).collect()));
    let mut widths: Vec<usize> =
        (0..columns.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let gaps = 2 * columns.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > width {
        let Some((widest, size)) = widths.iter().copied().enumerate().max_by_key(|(_, w)| *w) else { break };
        if size <= 8 {
            break;
        }
        widths[widest] = size - 1;
    }
    let bold = colours();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| {
                let text = if text.chars().count() > *width {
                    format!("{}…", text.chars().take(width.saturating_sub(1)).collect::<String>())
                } else {
                    text.clone()
                };
                format!("{text:<width$}")
            })
            .collect();
        let line = line.join("  ").trim_end().to_string();
        if n == 0 && bold {
            out.push_str(&format!("\x1b[1m{line}\x1b[0m\n"));
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One object, a `HEADING  value` line per column (lists shown as their count); values cut to `width`.
pub fn detail(item: &Value, columns: &[Column], width: usize) -> String {
    let label_width = columns.iter().map(|c| c.heading.chars().count()).max().unwrap_or(0);
    let room = width.saturating_sub(label_width + 2).max(8);
    let bold = colours();
    let mut out = String::new();
    for column in columns {
        let value = match item.pointer(column.pointer) {
            Some(Value::Array(list)) => format!("{} item(s)", list.len()),
            _ => cell(item, column.pointer),
        };
        let value = if value.chars().count() > room {
            format!("{}…", value.chars().take(room - 1).collect::<String>())
        } else {
            value
        };
        let heading = format!("{:<label_width$}", column.heading);
        let heading = if bold { format!("\x1b[1m{heading}\x1b[0m") } else { heading };
        out.push_str(&format!("{heading}  {value}\n"));
    }
    out
}

fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `COLUMNS`, else the terminal's width, else 100.
fn terminal_width() -> usize {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return columns;
    }
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we own; a non-terminal just fails.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_its_width_by_cutting_the_widest_column() {
        let item = serde_json::json!({"id": "0195d2c4-aaaa-bbbb-cccc-1234567890ab", "name": "a rather long experiment name", "phase": "running"});
        let columns = [col("ID", "/id"), col("NAME", "/name"), col("PHASE", "/phase")];
        let wide = table(&[&item], &columns, 200);
        assert!(wide.contains("a rather long experiment name"));
        let narrow = table(&[&item], &columns, 50);
        assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
        assert!(narrow.contains('…'));
        assert_eq!(cell(&serde_json::json!({"x": 88.0}), "/x"), "88");
        assert_eq!(cell(&serde_json::json!({}), "/x"), "-");
    }

    #[test]
    fn one_object_shows_a_field_per_line() {
        let item = serde_json::json!({"id": "e1", "phase": "running", "target_agents": ["a", "b"], "results": null});
        let columns = [
            col("ID", "/id"),
            col("PHASE", "/phase"),
            col("AGENTS", "/target_agents"),
            col("VERDICT", "/results/verdict"),
        ];
        assert_eq!(detail(&item, &columns, 80), "ID       e1\nPHASE    running\nAGENTS   2 item(s)\nVERDICT  -\n");
        let cut = detail(&serde_json::json!({"id": "x".repeat(50)}), &[col("ID", "/id")], 20);
        assert_eq!(cut.trim_end().chars().count(), 20, "{cut}");
    }
}
