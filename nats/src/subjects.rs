//! Every NATS subject Phoenix uses, built from one configurable prefix.
//!
//! Nothing else in the workspace formats a subject by hand: callers ask [`Subjects`] and get a
//! validated string, so an agent id such as `a.b` or `*` can never widen what a message reaches.

use thiserror::Error;

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "phoenix";

/// Why a prefix, token or subject was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubjectError {
    /// The prefix is not a sequence of plain NATS tokens.
    #[error("invalid subject prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The rejected prefix.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value meant to be one subject token (agent id, event kind, consumer name…) is not one.
    #[error("invalid subject token {token:?}: {reason}")]
    InvalidToken {
        /// The rejected value.
        token: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A subject given to publish or subscribe is malformed.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The rejected subject.
        subject: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A durable publish targeted a subject the agent results stream does not capture.
    #[error("subject {subject:?} is not captured by the agent results stream")]
    NotDurable {
        /// The rejected subject.
        subject: String,
    },
}

/// Builds the subjects of one Phoenix installation (see DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl Subjects {
    /// Uses `prefix` (one or more plain tokens separated by `.`) in front of every subject.
    pub fn new(prefix: impl Into<String>) -> Result<Self, SubjectError> {
        let prefix = prefix.into();
        let invalid = |reason| SubjectError::InvalidPrefix { prefix: prefix.clone(), reason };
        if prefix.is_empty() {
            return Err(invalid("must not be empty"));
        }
        for part in prefix.split('.') {
            if let Err(SubjectError::InvalidToken { reason, .. }) = token(part) {
                return Err(invalid(reason));
            }
        }
        Ok(Self { prefix })
    }

    /// The prefix in front of every subject.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>.agent.<agent_id>.tasks`: tasks pushed from the server to one agent.
    pub fn agent_tasks(&self, agent_id: &str) -> Result<String, SubjectError> {
        self.agent(agent_id, "tasks")
    }

    /// `<p>.agent.<agent_id>.heartbeat`: liveness reports of one agent.
    pub fn agent_heartbeat(&self, agent_id: &str) -> Result<String, SubjectError> {
        self.agent(agent_id, "heartbeat")
    }

    /// `<p>.agent.<agent_id>.task_status`: task progress and results of one agent (durable).
    pub fn agent_task_status(&self, agent_id: &str) -> Result<String, SubjectError> {
        self.agent(agent_id, "task_status")
    }

    /// `<p>.agent.<agent_id>.metrics`: per-pipeline measurements of one agent (durable).
    pub fn agent_metrics(&self, agent_id: &str) -> Result<String, SubjectError> {
        self.agent(agent_id, "metrics")
    }

    /// `_INBOX.agent.<agent_id>`: the reply-inbox prefix of one agent's requests. With per-agent NATS
    /// identities an agent may subscribe below it only, so it never sees another client's replies
    /// (the server's own inboxes are `_INBOX.<random>`, never `_INBOX.agent.…`).
    pub fn agent_inbox_prefix(&self, agent_id: &str) -> Result<String, SubjectError> {
        Ok(format!("_INBOX.agent.{}", token(agent_id)?))
    }

    /// `<p>.agent.*.heartbeat`: the heartbeats of every agent.
    pub fn all_agent_heartbeats(&self) -> String {
        self.all_agents("heartbeat")
    }

    /// `<p>.agent.*.task_status`: the task status reports of every agent.
    pub fn all_agent_task_status(&self) -> String {
        self.all_agents("task_status")
    }

    /// `<p>.agent.*.metrics`: the measurements of every agent.
    pub fn all_agent_metrics(&self) -> String {
        self.all_agents("metrics")
    }

    /// `<p>.events.<kind>.<id>`: one domain event about one entity.
    pub fn event(&self, kind: &str, id: &str) -> Result<String, SubjectError> {
        Ok(format!("{}.events.{}.{}", self.prefix, token(kind)?, token(id)?))
    }

    /// `<p>.events.>`: every domain event.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Name of the JetStream stream holding agent results: the prefix in upper case with every
    /// character that is not ASCII alphanumeric replaced by `_`, then `_AGENT`
    /// (`phoenix` -> `PHOENIX_AGENT`).
    pub fn agent_results_stream(&self) -> String {
        let mut name: String =
            self.prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        name.push_str("_AGENT");
        name
    }

    /// The wildcard subjects the agent results stream captures: task status and metrics.
    pub fn agent_results_subjects(&self) -> Vec<String> {
        vec![self.all_agent_task_status(), self.all_agent_metrics()]
    }

    /// Whether `subject` is captured by the agent results stream.
    pub fn is_agent_result(&self, subject: &str) -> bool {
        self.agent_results_subjects().iter().any(|pattern| subject_matches(pattern, subject))
    }

    /// The agent id inside an agent subject (`<p>.agent.<id>.<anything>`), if it is one.
    pub fn agent_id_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = subject.strip_prefix(self.prefix.as_str())?;
        let rest = rest.strip_prefix(".agent.")?;
        let (id, kind) = rest.split_once('.')?;
        (!id.is_empty() && !kind.is_empty() && !kind.contains('.')).then_some(id)
    }

    fn agent(&self, agent_id: &str, kind: &str) -> Result<String, SubjectError> {
        Ok(format!("{}.agent.{}.{kind}", self.prefix, token(agent_id)?))
    }

    fn all_agents(&self, kind: &str) -> String {
        format!("{}.agent.*.{kind}", self.prefix)
    }
}

/// Checks that `s` can stand as exactly one literal subject token and returns it.
///
/// Rejects the empty string, `.`, the wildcards `*` and `>`, and whitespace.
pub fn token(s: &str) -> Result<&str, SubjectError> {
    let invalid = |reason| SubjectError::InvalidToken { token: s.to_owned(), reason };
    if s.is_empty() {
        Err(invalid("must not be empty"))
    } else if s.contains('.') {
        Err(invalid("must not contain '.'"))
    } else if s.contains(['*', '>']) {
        Err(invalid("must not contain the wildcards '*' or '>'"))
    } else if s.chars().any(char::is_whitespace) {
        Err(invalid("must not contain whitespace"))
    } else {
        Ok(s)
    }
}

/// Checks a subject a message is published to: non-empty tokens, no wildcards, no whitespace.
pub fn validate_publish_subject(subject: &str) -> Result<(), SubjectError> {
    for part in subject.split('.') {
        if let Err(SubjectError::InvalidToken { reason, .. }) = token(part) {
            return Err(invalid_subject(subject, reason));
        }
    }
    Ok(())
}

/// Checks a subscription subject: like a publish subject, except that a whole token may be `*`
/// and the last token may be `>`.
pub fn validate_subscribe_subject(subject: &str) -> Result<(), SubjectError> {
    let mut parts = subject.split('.').peekable();
    while let Some(part) = parts.next() {
        let is_last = parts.peek().is_none();
        if part == "*" || (part == ">" && is_last) {
            continue;
        }
        if part == ">" {
            return Err(invalid_subject(subject, "'>' must be the last token"));
        }
        if let Err(SubjectError::InvalidToken { reason, .. }) = token(part) {
            return Err(invalid_subject(subject, reason));
        }
    }
    Ok(())
}

/// Whether `subject` matches the subscription `pattern` with NATS semantics: `*` matches exactly
/// one token, a final `>` matches one or more tokens.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn invalid_subject(subject: &str, reason: &'static str) -> SubjectError {
    SubjectError::InvalidSubject { subject: subject.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prefix_builds_the_documented_subjects() {
        let s = Subjects::default();
        assert_eq!(s.prefix(), "phoenix");
        assert_eq!(s.agent_tasks("a1").unwrap(), "phoenix.agent.a1.tasks");
        assert_eq!(s.agent_heartbeat("a1").unwrap(), "phoenix.agent.a1.heartbeat");
        assert_eq!(s.agent_task_status("a1").unwrap(), "phoenix.agent.a1.task_status");
        assert_eq!(s.agent_metrics("a1").unwrap(), "phoenix.agent.a1.metrics");
        assert_eq!(s.all_agent_heartbeats(), "phoenix.agent.*.heartbeat");
        assert_eq!(s.all_agent_task_status(), "phoenix.agent.*.task_status");
        assert_eq!(s.all_agent_metrics(), "phoenix.agent.*.metrics");
        assert_eq!(s.event("experiment", "e1").unwrap(), "phoenix.events.experiment.e1");
        assert_eq!(s.all_events(), "phoenix.events.>");
        assert_eq!(s.agent_results_stream(), "PHOENIX_AGENT");
        assert_eq!(s.agent_results_subjects(), vec!["phoenix.agent.*.task_status", "phoenix.agent.*.metrics"]);
    }

    #[test]
    fn stream_name_replaces_non_alphanumerics_and_uppercases() {
        let s = Subjects::new("acme.prod-eu_1").unwrap();
        assert_eq!(s.agent_results_stream(), "ACME_PROD_EU_1_AGENT");
        assert_eq!(s.agent_tasks("x").unwrap(), "acme.prod-eu_1.agent.x.tasks");
    }

    #[test]
    fn new_rejects_malformed_prefixes() {
        for bad in ["", ".", "a..b", "a.", ".a", "a b", "a.*", "a.>", "ph*x"] {
            assert!(
                matches!(Subjects::new(bad), Err(SubjectError::InvalidPrefix { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn token_rejects_everything_that_is_not_one_literal_token() {
        assert_eq!(token("agent-1_x").unwrap(), "agent-1_x");
        for bad in ["", "a.b", "*", ">", "a*", "a b", "a\tb", "a\n"] {
            assert!(token(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn builders_reject_ids_that_would_widen_the_subject() {
        let s = Subjects::default();
        assert!(matches!(s.agent_tasks("*"), Err(SubjectError::InvalidToken { .. })));
        assert!(s.agent_metrics("a.b").is_err());
        assert!(s.event("kind", ">").is_err());
        assert!(s.event("", "id").is_err());
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b.c", "a.b.c"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(subject_matches("a.>", "a.b"));
        assert!(subject_matches("a.>", "a.b.c.d"));
        assert!(subject_matches("*.*", "a.b"));
        assert!(!subject_matches("a.>", "a"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.d"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn subject_validation_distinguishes_publish_from_subscribe() {
        assert!(validate_publish_subject("a.b").is_ok());
        assert!(validate_publish_subject("a.*").is_err());
        assert!(validate_publish_subject("a..b").is_err());
        assert!(validate_publish_subject("").is_err());
        assert!(validate_subscribe_subject("a.*.c").is_ok());
        assert!(validate_subscribe_subject("a.>").is_ok());
        assert!(validate_subscribe_subject(">").is_ok());
        assert!(validate_subscribe_subject("a.>.c").is_err());
        assert!(validate_subscribe_subject("a.b*").is_err());
        assert!(validate_subscribe_subject("a b").is_err());
    }

    #[test]
    fn agent_results_cover_status_and_metrics_only() {
        let s = Subjects::default();
        assert!(s.is_agent_result("phoenix.agent.a1.task_status"));
        assert!(s.is_agent_result("phoenix.agent.a1.metrics"));
        assert!(!s.is_agent_result("phoenix.agent.a1.heartbeat"));
        assert!(!s.is_agent_result("other.agent.a1.metrics"));
    }

    #[test]
    fn agent_id_is_recovered_from_agent_subjects() {
        let s = Subjects::default();
        assert_eq!(s.agent_id_of("phoenix.agent.a-1.heartbeat"), Some("a-1"));
        assert_eq!(s.agent_id_of("phoenix.events.x.y"), None);
        assert_eq!(s.agent_id_of("phoenixx.agent.a.heartbeat"), None);
        assert_eq!(s.agent_id_of("phoenix.agent.a.b.c"), None);
    }
}
