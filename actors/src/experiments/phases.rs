//! The phase machine of an experiment (DESIGN.md §7). Pure: which action is allowed in which phase and
//! where it leads; the actor applies it.

use serde::{Deserialize, Serialize};

/// Where an experiment is in its life. The JSON field is `phase` (and `status`, a deprecated alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Created, not started.
    Pending,
    /// Both pipelines are being applied to the target agents.
    Deploying,
    /// Both run everywhere: warm-up, then the measurement window.
    Running,
    /// The window ended; KPIs are being computed.
    Analyzing,
    /// KPIs and verdict are ready.
    Completed,
    /// The candidate became a deployment.
    Promoted,
    /// Being stopped: pipelines are removed.
    Stopping,
    /// Stopped by an operator.
    Stopped,
    /// The candidate was removed, the baseline kept.
    RolledBack,
    /// Could not deploy, or lost its agents.
    Failed,
}

/// What an operator can ask of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Promote,
    Rollback,
    Delete,
}

impl Action {
    /// Every action, for listing what is allowed.
    pub const ALL: [Action; 5] = [Action::Start, Action::Stop, Action::Promote, Action::Rollback, Action::Delete];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Delete => "delete",
        }
    }
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 10] = [
        Phase::Pending,
        Phase::Deploying,
        Phase::Running,
        Phase::Analyzing,
        Phase::Completed,
        Phase::Promoted,
        Phase::Stopping,
        Phase::Stopped,
        Phase::RolledBack,
        Phase::Failed,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Deploying => "deploying",
            Phase::Running => "running",
            Phase::Analyzing => "analyzing",
            Phase::Completed => "completed",
            Phase::Promoted => "promoted",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::RolledBack => "rolled_back",
            Phase::Failed => "failed",
        }
    }

    /// An experiment in this phase has pipelines out on agents (and cannot be deleted).
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Deploying | Phase::Running | Phase::Analyzing | Phase::Stopping)
    }

    /// Where `action` leads from this phase, or `None` when it is not allowed now.
    pub fn after(self, action: Action) -> Option<Phase> {
        use Phase::*;
        match (self, action) {
            (Pending, Action::Start) => Some(Deploying),
            (Deploying | Running, Action::Stop) => Some(Stopping),
            (Completed, Action::Promote) => Some(Promoted),
            (Running | Completed, Action::Rollback) => Some(RolledBack),
            (phase, Action::Delete) if !phase.is_active() => Some(phase),
            _ => None,
        }
    }

    /// The actions allowed now (for a 409's answer).
    pub fn allowed_actions(self) -> Vec<&'static str> {
        Action::ALL.iter().filter(|a| self.after(**a).is_some()).map(|a| a.as_str()).collect()
    }
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("unknown phase '{s}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_transitions_of_the_design_are_allowed() {
        let allowed: Vec<(Phase, Action, Phase)> = Phase::ALL
            .into_iter()
            .flat_map(|p| {
                Action::ALL
                    .into_iter()
                    .filter(|a| *a != Action::Delete)
                    .filter_map(move |a| p.after(a).map(|to| (p, a, to)))
            })
            .collect();
        assert_eq!(
            allowed,
            [
                (Phase::Pending, Action::Start, Phase::Deploying),
                (Phase::Deploying, Action::Stop, Phase::Stopping),
                (Phase::Running, Action::Stop, Phase::Stopping),
                (Phase::Running, Action::Rollback, Phase::RolledBack),
                (Phase::Completed, Action::Promote, Phase::Promoted),
                (Phase::Completed, Action::Rollback, Phase::RolledBack),
            ]
        );
        assert_eq!(Phase::Running.allowed_actions(), ["stop", "rollback"]);
        assert_eq!(Phase::Completed.allowed_actions(), ["promote", "rollback", "delete"]);
        for phase in Phase::ALL {
            assert_eq!(phase.as_str().parse::<Phase>(), Ok(phase));
        }
    }
}
