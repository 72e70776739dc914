//! Prometheus's text exposition format (0.0.4) and OpenMetrics 1.0, as a scrape returns them: samples
//! with their labels, values and times, and the families' declared types. A line that does not parse
//! fails the whole scrape, as in Prometheus (a half-read target would look like vanished series).

use std::collections::HashMap;

use super::assemble::{parse_float, FamilyType, FlatSample, LabelPairs};

/// What an exposition holds.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<FlatSample>,
    pub types: HashMap<String, FamilyType>,
}

/// Which of the two formats a body is in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: times in milliseconds.
    Text,
    /// `application/openmetrics-text`: times in seconds, exemplars after ` # `, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` names (the text format when it names neither).
    pub fn of_content_type(content_type: &str) -> Format {
        if content_type.trim_start().starts_with("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Parses `body`; samples without a time of their own get `default_time_ms`.
pub fn parse(body: &str, format: Format, default_time_ms: i64) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (number, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let failed = |why: String| format!("line {}: {why}: {:?}", number + 1, truncated(line));
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if let (Some("TYPE"), Some(name), Some(kind)) = (words.next(), words.next(), words.next()) {
                out.types.insert(name.to_string(), FamilyType::from_text(kind));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        out.samples.push(sample(line, format, default_time_ms).map_err(failed)?);
    }
    Ok(out)
}

fn truncated(line: &str) -> &str {
    match line.char_indices().nth(120) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

fn sample(line: &str, format: Format, default_time_ms: i64) -> Result<FlatSample, String> {
    let line = line.trim_start();
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inside)?;
        labels = parsed;
        rest = after;
    }
    // OpenMetrics puts an exemplar after ` # `; it is not part of the sample.
    if format == Format::OpenMetrics {
        if let Some(at) = rest.find(" # ") {
            rest = &rest[..at];
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_float(value).ok_or_else(|| format!("'{value}' is not a number"))?;
    let time_ms = match fields.next() {
        None => default_time_ms,
        Some(time) => match format {
            Format::Text => time.parse::<i64>().map_err(|_| format!("'{time}' is not a time in milliseconds"))?,
            Format::OpenMetrics => {
                let seconds: f64 = time.parse().map_err(|_| format!("'{time}' is not a time in seconds"))?;
                (seconds * 1000.0).round() as i64
            }
        },
    };
    if fields.next().is_some() {
        return Err("more than a value and a time".into());
    }
    Ok(FlatSample { name: name.to_string(), labels, value, time_ms })
}

/// `name="value", …}` and what follows the closing brace.
fn label_set(mut text: &str) -> Result<(LabelPairs, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let name_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
        let name = &text[..name_end];
        if name.is_empty() {
            return Err("a label without a name".into());
        }
        text = text[name_end..].trim_start();
        text = text.strip_prefix('=').ok_or_else(|| format!("no '=' after label {name}"))?.trim_start();
        text = text.strip_prefix('"').ok_or_else(|| format!("label {name}'s value is not quoted"))?;
        let (value, after) = quoted(text).ok_or_else(|| format!("label {name}'s value is not closed"))?;
        labels.push((name.to_string(), value));
        text = after.trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

/// A quoted value's text (escapes `\\`, `\"`, `\n` resolved) and what follows its closing quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_with_types_escapes_and_times() {
        let body = "# HELP http_requests_total All requests.\n# TYPE http_requests_total counter\n\
            http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
            http_requests_total{ method = \"get\", path=\"C:\\\\dir\\\\\",note=\"say \\\"hi\\\"\\n\", } 3\n\
            # a comment\n\nmetric_without_labels 12.47\nrpc_duration_seconds{quantile=\"0.5\"} +Inf\n";
        let parsed = parse(body, Format::Text, 42).expect("parses");
        assert_eq!(parsed.types.get("http_requests_total"), Some(&FamilyType::Counter));
        assert_eq!(parsed.samples.len(), 4);
        assert_eq!(parsed.samples[0].time_ms, 1395066363000);
        let labels = &parsed.samples[1].labels;
        assert_eq!(labels[1], ("path".to_string(), "C:\\dir\\".to_string()));
        assert_eq!(labels[2], ("note".to_string(), "say \"hi\"\n".to_string()));
        assert_eq!((parsed.samples[1].time_ms, parsed.samples[2].value), (42, 12.47));
        assert_eq!(parsed.samples[3].value, f64::INFINITY);
    }

    #[test]
    fn openmetrics_times_are_seconds_and_exemplars_are_left_out() {
        let body =
            "# TYPE foo counter\nfoo_total{a=\"1\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n# EOF\n";
        let parsed = parse(body, Format::OpenMetrics, 0).expect("parses");
        assert_eq!((parsed.samples[0].value, parsed.samples[0].time_ms), (17.0, 1520879607789));
        assert_eq!(Format::of_content_type("application/openmetrics-text; version=1.0.0"), Format::OpenMetrics);
    }

    #[test]
    fn a_bad_line_fails_the_scrape_and_says_where() {
        for (body, expected) in [
            ("ok 1\nbroken{a=\"1\" 2\n", "line 2"),
            ("x{a=1} 2\n", "not quoted"),
            ("x notanumber\n", "not a number"),
            ("x 1 2 3\n", "more than"),
            ("{a=\"1\"} 1\n", "no metric name"),
        ] {
            let error = parse(body, Format::Text, 0).expect_err(body);
            assert!(error.contains(expected), "{body:?}: {error}");
        }
    }
}
