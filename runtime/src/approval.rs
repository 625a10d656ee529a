//! Human approval: a tool whose manifest says `[access] approval =
//! "always"` (or `"destructive"`, for tools hinted destructive) runs only
//! once a person has said yes, asked through MCP elicitation with the tool
//! and its (masked) arguments in view:
//!
//! - 2026-07-28: the call is answered with an `input_required` result
//!   holding the question and a sealed `requestState` (rmcp's HMAC codec),
//!   bound to the caller, the tool and the exact arguments, with an
//!   expiry; the retry must echo it unchanged and carry the answer. Each
//!   state is good for one retry (its nonce is remembered until it
//!   expires).
//! - legacy: a server-to-client `elicitation/create` request, waited for
//!   up to the approval timeout.
//! - a client that declared no elicitation is refused, unless
//!   `[approval] out_of_band = true`: then the call waits for `stockade
//!   admin approve ID` (or `deny ID`) by an identity other than the
//!   caller's (four eyes), up to the timeout.
//!
//! Decline, cancel, timeout, an altered, expired, foreign or replayed
//! state: the call is refused, and the reason says which.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, InputRequiredResult,
    InputResponses, RequestStateCodec, SealOptions,
};
use rmcp::service::Peer;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use stockade_host_api::{CallerIdentity, ToolHints};
use tokio::sync::oneshot;

use crate::config::ConfigError;
use crate::units::parse_duration;

/// The key of the one question in an `input_required` result.
const QUESTION: &str = "approval";

/// `[access] approval`: when a tool's calls wait for a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// Never (the default).
    #[default]
    Never,
    /// Every call.
    Always,
    /// Calls of tools hinted destructive.
    Destructive,
}

impl ApprovalMode {
    /// Whether a call of a tool with `hints` needs approval.
    pub fn applies(self, hints: &ToolHints) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::Destructive => hints.destructive,
        }
    }
}

/// `[approval]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    timeout: Option<String>,
    #[serde(default)]
    out_of_band: bool,
}

/// `[approval]`, checked.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// How long a question waits for its answer.
    pub timeout: Duration,
    /// Whether clients without elicitation wait for `stockade admin
    /// approve` instead of being refused.
    pub out_of_band: bool,
}

impl RawApproval {
    /// Checks the timeout (1 second to 1 hour, default 2 minutes).
    pub fn check(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<ApprovalSettings, ConfigError> {
        let timeout = match &self.timeout {
            None => Duration::from_secs(120),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| {
                    invalid(
                        "approval.timeout",
                        "a duration from 1s to 1h, such as \"2m\"",
                    )
                })?,
        };
        Ok(ApprovalSettings {
            timeout,
            out_of_band: self.out_of_band,
        })
    }
}

/// How the current request can reach a person.
pub enum Asking<'a> {
    /// A legacy session whose client declared elicitation.
    Peer(&'a Peer<RoleServer>),
    /// A 2026-07-28 request from a client that declared elicitation: the
    /// question goes out in an `input_required` result, the answer comes
    /// back in a retry.
    Retry {
        /// The `requestState` the retry echoes, if this is one.
        state: Option<&'a str>,
        /// The answers the retry carries.
        responses: Option<&'a InputResponses>,
    },
    /// The client declared no elicitation.
    Cannot,
}

/// What happens to a call that needs approval.
pub enum Verdict {
    /// A person said yes; `how` says through what.
    Approved {
        /// `elicitation`, `input_required` or `out_of_band`, and by whom.
        how: String,
    },
    /// Send this back; the retry carries the answer.
    Ask(InputRequiredResult),
    /// Refused: the reason names what happened.
    Refused(String),
}

/// What one call is about, for the question and its binding.
pub struct Subject<'a> {
    /// The caller.
    pub caller: &'a CallerIdentity,
    /// The tool's served name.
    pub tool: &'a str,
    /// The arguments as given (bound into the sealed state).
    pub arguments: &'a Value,
    /// The arguments as a person may see them (sensitive values masked).
    pub shown: &'a Value,
}

/// A call waiting for `stockade admin approve`.
struct Pending {
    tool: String,
    caller: String,
    /// The caller's identities, none of whom may approve.
    identities: Vec<String>,
    answer: oneshot::Sender<Result<String, String>>,
}

/// The approvals of one process.
pub struct Approvals {
    settings: ApprovalSettings,
    codec: RequestStateCodec,
    /// Nonces of sealed states already answered, until they expire.
    used: Mutex<HashMap<String, Instant>>,
    /// Calls waiting for an out-of-band answer, by id.
    pending: Mutex<HashMap<String, Pending>>,
}

impl Approvals {
    /// Approvals sealed with a key made for this process.
    pub fn new(settings: ApprovalSettings) -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| format!("no randomness for the approval key: {e}"))?;
        let codec = RequestStateCodec::try_new(key.to_vec()).map_err(|e| e.to_string())?;
        Ok(Self {
            settings,
            codec,
            used: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Asks for, or checks, approval of one call.
    pub async fn decide(&self, asking: Asking<'_>, subject: &Subject<'_>) -> Verdict {
        match asking {
            Asking::Peer(peer) => self.ask_peer(peer, subject).await,
            Asking::Retry { state: None, .. } => Verdict::Ask(self.question(subject)),
            Asking::Retry {
                state: Some(state),
                responses,
            } => self.check_retry(state, responses, subject),
            Asking::Cannot if self.settings.out_of_band => self.wait_out_of_band(subject).await,
            Asking::Cannot => Verdict::Refused(format!(
                "refused: `{}` needs a person's approval, and this client cannot ask (it declared no elicitation capability)",
                subject.tool
            )),
        }
    }

    /// The question a person is asked.
    fn elicitation(&self, subject: &Subject<'_>) -> ElicitRequestParams {
        let caller = subject.caller;
        let message = format!(
            "Approve a call of the tool `{}` by client `{}`{}?\nArguments: {}",
            subject.tool,
            caller.client,
            caller
                .user
                .as_deref()
                .map(|u| format!(" (user `{u}`)"))
                .unwrap_or_default(),
            subject.shown
        );
        let form = serde_json::json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "approve": {
                        "type": "boolean",
                        "title": "Approve this call",
                        "description": "Run the tool with these arguments",
                    }
                },
                "required": ["approve"],
            },
        });
        serde_json::from_value(form).expect("the approval form is a valid elicitation")
    }

    async fn ask_peer(&self, peer: &Peer<RoleServer>, subject: &Subject<'_>) -> Verdict {
        let asked = peer
            .create_elicitation_with_timeout(self.elicitation(subject), Some(self.settings.timeout))
            .await;
        match asked {
            Ok(answer) => judge(&answer, "elicitation", subject.tool),
            Err(rmcp::ServiceError::Timeout { .. }) => Verdict::Refused(format!(
                "refused: no answer to the approval of `{}` within {}s",
                subject.tool,
                self.settings.timeout.as_secs()
            )),
            Err(err) => Verdict::Refused(format!(
                "refused: the approval of `{}` could not be asked: {err}",
                subject.tool
            )),
        }
    }

    /// What binds a sealed state to one caller, tool and set of arguments.
    fn binding(subject: &Subject<'_>) -> Vec<u8> {
        let caller = subject.caller;
        let mut digest = Sha256::new();
        for part in [
            caller.client.as_str(),
            caller.user.as_deref().unwrap_or(""),
            subject.tool,
            &subject.arguments.to_string(),
        ] {
            digest.update(part.as_bytes());
            digest.update(b"\0");
        }
        digest.finalize().to_vec()
    }

    fn question(&self, subject: &Subject<'_>) -> InputRequiredResult {
        let nonce = uuid::Uuid::new_v4().to_string();
        let binding = Self::binding(subject);
        let state = self.codec.seal_with(
            nonce.as_bytes(),
            &SealOptions::new()
                .associated_data(&binding)
                .ttl(self.settings.timeout),
        );
        let request = ElicitRequest::new(self.elicitation(subject));
        let mut questions = rmcp::model::InputRequests::new();
        questions.insert(
            QUESTION.to_owned(),
            rmcp::model::InputRequest::Elicitation(request),
        );
        InputRequiredResult::new(Some(questions), Some(state))
    }

    fn check_retry(
        &self,
        state: &str,
        responses: Option<&InputResponses>,
        subject: &Subject<'_>,
    ) -> Verdict {
        let nonce = match self.codec.open_with(state, &Self::binding(subject)) {
            Ok(nonce) => String::from_utf8_lossy(&nonce).into_owned(),
            Err(rmcp::model::RequestStateError::Expired) => {
                return Verdict::Refused(format!(
                    "refused: the approval of `{}` expired; call again to be asked again",
                    subject.tool
                ));
            }
            Err(_) => {
                return Verdict::Refused(format!(
                    "refused: the approval state does not match this call of `{}` (altered, or made for another caller, tool or arguments)",
                    subject.tool
                ));
            }
        };
        {
            let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            used.retain(|_, until| *until > now);
            if used.contains_key(&nonce) {
                return Verdict::Refused(format!(
                    "refused: this approval of `{}` was already used (a replay)",
                    subject.tool
                ));
            }
            used.insert(nonce, now + self.settings.timeout);
        }
        let answer = responses
            .and_then(|r| r.get(QUESTION))
            .and_then(|v| serde_json::from_value::<ElicitResult>(v.clone()).ok());
        match answer {
            Some(answer) => judge(&answer, "input_required", subject.tool),
            None => Verdict::Refused(format!(
                "refused: the retry of `{}` carries no answer to the approval question",
                subject.tool
            )),
        }
    }

    async fn wait_out_of_band(&self, subject: &Subject<'_>) -> Verdict {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let (answer, answered) = oneshot::channel();
        let caller = subject.caller;
        let mut identities = vec![caller.client.clone()];
        identities.extend(caller.user.clone());
        self.lock_pending().insert(
            id.clone(),
            Pending {
                tool: subject.tool.to_owned(),
                caller: caller.client.clone(),
                identities,
                answer,
            },
        );
        tracing::warn!(
            target: "stockade::approval",
            id = %id,
            tool = subject.tool,
            client = %caller.client,
            "call waiting for approval: `stockade admin approve {id}` (or `deny {id}`) by someone other than the caller"
        );
        let waited = tokio::time::timeout(self.settings.timeout, answered).await;
        self.lock_pending().remove(&id);
        match waited {
            Ok(Ok(Ok(by))) => Verdict::Approved {
                how: format!("out_of_band approval {id} by {by}"),
            },
            Ok(Ok(Err(by))) => Verdict::Refused(format!(
                "refused: the call of `{}` was denied by {by} (approval {id})",
                subject.tool
            )),
            _ => Verdict::Refused(format!(
                "refused: no one approved the call of `{}` within {}s (approval {id})",
                subject.tool,
                self.settings.timeout.as_secs()
            )),
        }
    }

    /// Answers the waiting call `id`: `approve` or deny, by `who` (an
    /// identity) as described by `by`. The caller's own identities may
    /// deny their call, never approve it.
    pub fn answer(&self, id: &str, approve: bool, who: &str, by: &str) -> Result<String, String> {
        let mut pending = self.lock_pending();
        let Some(waiting) = pending.get(id) else {
            return Err(format!("no call waits for approval {id} in this process"));
        };
        if approve && waiting.identities.iter().any(|identity| identity == who) {
            return Err(format!(
                "refused: `{who}` made the call, so may not approve it (four eyes)"
            ));
        }
        let waiting = pending.remove(id).expect("present above");
        let summary = format!("{} of `{}` by `{}`", id, waiting.tool, waiting.caller);
        let _ = waiting.answer.send(if approve {
            Ok(by.to_owned())
        } else {
            Err(by.to_owned())
        });
        Ok(format!(
            "{} {summary}",
            if approve { "approved" } else { "denied" }
        ))
    }

    /// The calls waiting for an out-of-band answer, one line each.
    pub fn waiting(&self) -> Vec<String> {
        self.lock_pending()
            .iter()
            .map(|(id, p)| format!("{id}: `{}` called by `{}`", p.tool, p.caller))
            .collect()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A person's answer to the approval form.
fn judge(answer: &ElicitResult, via: &str, tool: &str) -> Verdict {
    let approved = answer
        .content
        .as_ref()
        .and_then(|c| c.get("approve"))
        .and_then(Value::as_bool)
        == Some(true);
    match answer.action {
        ElicitationAction::Accept if approved => Verdict::Approved {
            how: via.to_owned(),
        },
        ElicitationAction::Accept => Verdict::Refused(format!(
            "refused: the user did not approve the call of `{tool}`"
        )),
        ElicitationAction::Decline => {
            Verdict::Refused(format!("refused: the user declined the call of `{tool}`"))
        }
        _ => Verdict::Refused(format!(
            "refused: the user cancelled the approval of `{tool}`"
        )),
    }
}
