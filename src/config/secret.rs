//! Settings values that must never be printed or logged in full.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A URL that may carry a password (`postgres://user:pass@host/db`). `Debug`, `Display` and
/// `Serialize` show it with the password masked; only [`SensitiveUrl::expose`] gives the real value.
#[derive(Clone, PartialEq, Eq)]
pub struct SensitiveUrl(String);

const MASK: &str = "********";

impl SensitiveUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SensitiveUrl(url.into())
    }

    /// The full URL, password included: pass it to a driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password of its user-info (`user:password@`), and any `password=` query
    /// parameter, replaced by a mask.
    pub fn masked(&self) -> String {
        mask_query_password(&self.mask_user_info())
    }

    fn mask_user_info(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
        let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
            return url.clone();
        };
        match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
            Some(colon) => format!("{}{MASK}{}", &url[..=colon], &url[at..]),
            // A bare token as user-info (`nats://TOKEN@host`) is itself the secret.
            None => format!("{}{MASK}{}", &url[..scheme_end], &url[at..]),
        }
    }
}

/// `…?sslmode=require&password=x` -> `…?sslmode=require&password=********` (libpq accepts both forms).
fn mask_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_string() };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", masked.join("&"))
}

impl fmt::Debug for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for SensitiveUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for SensitiveUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SensitiveUrl)
    }
}

/// A secret value (a key, a password). Printed and serialised only as a mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value: hand it to the code that needs it, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_of_a_url_with_user_info() {
        let url = SensitiveUrl::new("postgres://phoenix:s3cret@db:5432/phoenix");
        assert_eq!(url.masked(), "postgres://phoenix:********@db:5432/phoenix");
        assert_eq!(format!("{url}"), "postgres://phoenix:********@db:5432/phoenix");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://phoenix:s3cret@db:5432/phoenix");
    }

    #[test]
    fn masks_a_password_given_as_a_query_parameter() {
        let url = SensitiveUrl::new("postgres://db/phoenix?sslmode=require&password=s3cret");
        assert_eq!(url.masked(), "postgres://db/phoenix?sslmode=require&password=********");
    }

    #[test]
    fn masks_a_bare_token_used_as_user_info() {
        let url = SensitiveUrl::new("nats://tok3n@nats:4222");
        assert_eq!(url.masked(), "nats://********@nats:4222");
    }

    #[test]
    fn a_secret_never_shows_its_value() {
        let secret = Secret::new("0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{secret:?}"), MASK);
        assert_eq!(serde_json::to_string(&secret).expect("serialise"), format!("\"{MASK}\""));
        assert_eq!(secret.expose(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn leaves_urls_without_credentials_alone() {
        for plain in ["sqlite://phoenix.db", "nats://127.0.0.1:4222", "postgres://db/x?user=a@b"] {
            assert_eq!(SensitiveUrl::new(plain).masked(), plain);
        }
    }
}
