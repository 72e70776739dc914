//! Series selectors for what an experiment must keep exactly: `metric{key="value", key=~"regex"}`, as in
//! PromQL (`=`, `!=`, `=~`, `!~`; regexes anchored). The metric may be left out (`{route="/checkout"}`);
//! `metric{}` selects every series of a metric. A point's attributes include its resource's.
//!
//! A critical entry with a `{` is a selector; one without is a process name (as before selectors).

use regex::Regex;

use crate::model::Point;

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
    NotMatches(Regex),
}

#[derive(Debug, Clone)]
pub struct Selector {
    metric: Option<String>,
    matchers: Vec<(String, Op)>,
}

impl Selector {
    /// True when `text` is written as a selector (has a `{`), not a process name.
    pub fn is_selector(text: &str) -> bool {
        text.contains('{')
    }

    pub fn parse(text: &str) -> Result<Selector, String> {
        let (metric, rest) = text.split_once('{').ok_or("a selector is metric{…}")?;
        let body = rest.trim_end().strip_suffix('}').ok_or("a selector ends with }")?;
        let metric = metric.trim();
        let mut matchers = Vec::new();
        for part in split_matchers(body)? {
            let at = part.find(['=', '!']).ok_or_else(|| format!("'{part}' is not key=\"value\""))?;
            let (key, rest) = part.split_at(at);
            let (op, value) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| rest.strip_prefix(op).map(|value| (*op, value.trim())))
                .ok_or_else(|| format!("'{part}' has no =, !=, =~ or !~"))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("the value in '{part}' is not quoted"))?
                .replace("\\\"", "\"");
            let anchored = || Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("'{value}': {e}"));
            let op = match op {
                "=" => Op::Equal(value),
                "!=" => Op::NotEqual(value),
                "=~" => Op::Matches(anchored()?),
                _ => Op::NotMatches(anchored()?),
            };
            matchers.push((key.trim().to_string(), op));
        }
        if metric.is_empty() && matchers.is_empty() {
            return Err("a selector names a metric or an attribute".into());
        }
        Ok(Selector { metric: (!metric.is_empty()).then(|| metric.to_string()), matchers })
    }

    pub fn matches(&self, point: &Point) -> bool {
        if self.metric.as_deref().is_some_and(|m| m != point.name()) {
            return false;
        }
        self.matchers.iter().all(|(key, op)| {
            let value = point.label(key).map_or("", |v| &**v);
            match op {
                Op::Equal(want) => value == want,
                Op::NotEqual(want) => value != want,
                Op::Matches(re) => re.is_match(value),
                Op::NotMatches(re) => !re.is_match(value),
            }
        })
    }
}

/// The matchers between the braces, split at commas outside quotes.
fn split_matchers(body: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    parts.push(body[start..].trim());
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect())
}

/// True when every point of `input` that `selector` selects is in `output` unchanged (same series, same
/// value), and there was one: the series a cut must keep exactly.
pub fn kept_exactly(selector: &Selector, input: &[Point], output: &[Point]) -> bool {
    let selected: Vec<&Point> = input.iter().filter(|p| selector.matches(p)).collect();
    !selected.is_empty()
        && selected.iter().all(|wanted| output.iter().any(|p| p.same_series(wanted) && p.value == wanted.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;

    fn point(route: &str, value: f64) -> Point {
        Point::new("http.requests", MetricKind::COUNTER, &[("route", route), ("user", "u1")], value, 1)
    }

    #[test]
    fn selectors_match_as_in_promql() {
        let checkout = Selector::parse(r#"http.requests{route="/checkout"}"#).expect("parses");
        assert!(checkout.matches(&point("/checkout", 1.0)));
        assert!(!checkout.matches(&point("/home", 1.0)));
        let regex = Selector::parse(r#"{route=~"/check.*", user!="u2"}"#).expect("parses");
        assert!(regex.matches(&point("/checkout", 1.0)));
        assert!(!Selector::parse(r#"{route!~"/check.*"}"#).expect("parses").matches(&point("/checkout", 1.0)));
        assert!(Selector::parse("http.requests{}").expect("every series").matches(&point("/x", 1.0)));
        for bad in ["{route=/x}", "{route=\"/x}", "{}", "{route~\"x\"}", r#"{route=~"("}"#] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
        assert!(Selector::is_selector("m{}") && !Selector::is_selector("nginx"));
    }

    #[test]
    fn kept_exactly_means_the_same_series_with_the_same_value() {
        let checkout = Selector::parse(r#"http.requests{route="/checkout"}"#).expect("parses");
        let input = vec![point("/checkout", 3.0), point("/home", 1.0)];
        assert!(kept_exactly(&checkout, &input, &input));
        assert!(!kept_exactly(&checkout, &input, &[point("/checkout", 2.0)]), "another value");
        let merged = Point::new("http.requests", MetricKind::COUNTER, &[("route", "/checkout")], 3.0, 1);
        assert!(!kept_exactly(&checkout, &input, &[merged]), "the user attribute is gone: another series");
        assert!(!kept_exactly(&checkout, &[point("/home", 1.0)], &input), "nothing selected, nothing to keep");
    }
}
