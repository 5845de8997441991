//! Approval: whether a tool call runs at once, waits for a person, or is
//! refused. The policy is set per risk level in `[approval]` and can be
//! overridden per tool in `[approval.tools]`.

use crate::tool::RiskLevel;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
pub use troupe_config::Policy;

/// A call waiting for a person's yes or no. The runtime turns it into a
/// question in the UX and, on yes, hands it back to
/// [`crate::ToolRegistry::call_approved`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Unique id of this request.
    pub id: String,
    /// The tool to call.
    pub tool: String,
    /// The arguments, already validated.
    pub args: Value,
    /// The tool's risk level.
    pub risk: RiskLevel,
}

impl ApprovalRequest {
    /// The question put to the person.
    pub fn question(&self) -> String {
        format!(
            "Allow the {} tool `{}` with arguments {}?",
            self.risk, self.tool, self.args
        )
    }
}

/// What the policy says about one call.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalDecision {
    /// Run it.
    Allowed,
    /// Ask the person first.
    Pending(ApprovalRequest),
    /// Refused; the reason is shown to the model.
    Denied(String),
}

/// Policies per risk level plus per-tool overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    read: Policy,
    write: Policy,
    execute: Policy,
    network: Policy,
    overrides: BTreeMap<String, Policy>,
}

impl Default for ApprovalPolicy {
    fn default() -> ApprovalPolicy {
        ApprovalPolicy::from_config(&troupe_config::ApprovalConfig::default())
    }
}

impl ApprovalPolicy {
    /// The policy `[approval]` describes.
    pub fn from_config(cfg: &troupe_config::ApprovalConfig) -> ApprovalPolicy {
        ApprovalPolicy {
            read: cfg.read,
            write: cfg.write,
            execute: cfg.execute,
            network: cfg.network,
            overrides: cfg.tools.clone(),
        }
    }

    /// The same policy for every risk level, no overrides.
    pub fn uniform(policy: Policy) -> ApprovalPolicy {
        ApprovalPolicy {
            read: policy,
            write: policy,
            execute: policy,
            network: policy,
            overrides: BTreeMap::new(),
        }
    }

    /// Sets the policy for one risk level.
    pub fn with_risk(mut self, risk: RiskLevel, policy: Policy) -> ApprovalPolicy {
        *self.slot(risk) = policy;
        self
    }

    /// Overrides the policy for one tool.
    pub fn with_tool(mut self, tool: &str, policy: Policy) -> ApprovalPolicy {
        self.overrides.insert(tool.to_string(), policy);
        self
    }

    fn slot(&mut self, risk: RiskLevel) -> &mut Policy {
        match risk {
            RiskLevel::Read => &mut self.read,
            RiskLevel::Write => &mut self.write,
            RiskLevel::Execute => &mut self.execute,
            RiskLevel::Network => &mut self.network,
        }
    }

    /// The policy that applies to `tool` at `risk`, and whether it came from
    /// a per-tool override.
    pub fn policy_for(&self, tool: &str, risk: RiskLevel) -> (Policy, bool) {
        if let Some(p) = self.overrides.get(tool) {
            return (*p, true);
        }
        let p = match risk {
            RiskLevel::Read => self.read,
            RiskLevel::Write => self.write,
            RiskLevel::Execute => self.execute,
            RiskLevel::Network => self.network,
        };
        (p, false)
    }

    /// Tool names that have an override; the registry warns about ones that
    /// name no registered tool (often a typo in the config).
    pub fn overridden_tools(&self) -> impl Iterator<Item = &str> {
        self.overrides.keys().map(String::as_str)
    }

    /// Decides one call.
    pub fn decide(&self, tool: &str, risk: RiskLevel, args: &Value) -> ApprovalDecision {
        match self.policy_for(tool, risk) {
            (Policy::Allow, _) => ApprovalDecision::Allowed,
            (Policy::Ask, _) => ApprovalDecision::Pending(ApprovalRequest {
                id: uuid::Uuid::new_v4().to_string(),
                tool: tool.to_string(),
                args: args.clone(),
                risk,
            }),
            (Policy::Deny, true) => ApprovalDecision::Denied(format!(
                "the tool `{tool}` is denied by the approval policy ([approval.tools] {tool} = \"deny\"); \
                 do the task without it"
            )),
            (Policy::Deny, false) => ApprovalDecision::Denied(format!(
                "the tool `{tool}` is denied by the approval policy: {risk} tools are not allowed \
                 ([approval] {risk} = \"deny\"); do the task without it"
            )),
        }
    }
}
