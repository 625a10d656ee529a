//! Self-confinement: once its configuration is read, and before any thread
//! starts, the serving process gives up (with Landlock) every file, port and
//! program its configuration does not need. A guest that escaped the
//! sandbox would find a process that can read only Stockade's own files,
//! write only its own directories, connect only to the ports its
//! destinations use, bind only its listen ports, run no program, and reach
//! no abstract socket or process outside itself.

pub mod plan;
pub mod selftest;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort,
    PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

pub use plan::Plan;

/// The Landlock ABI whose rights Stockade asks for: files (with truncate
/// and device ioctls), TCP bind and connect, and the abstract-socket and
/// signal scopes.
const TARGET_ABI: ABI = ABI::V6;

/// Why the process could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Threads were already running: Landlock would confine only this one.
    #[error(
        "confinement must come before any thread starts, and {0} are running; this is a bug in Stockade"
    )]
    Threads(usize),
    /// A directory the plan names could not be created or opened.
    #[error("{}: cannot open for the confinement rules: {reason}", path.display())]
    Path {
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The kernel refused the rules.
    #[error("the kernel refused the confinement rules: {0}")]
    Kernel(String),
    /// `server.require_confinement` is set and the kernel cannot enforce
    /// every rule.
    #[error(
        "server.require_confinement is set, but {0}; not serving (unset it to serve with a warning)"
    )]
    Required(String),
}

/// What the kernel enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The Landlock ABI the kernel offers (0: none).
    pub abi: i32,
    /// Every rule enforced, some, or none.
    pub level: Level,
}

/// How much of the plan is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Files, ports, scopes: all of it.
    Full,
    /// Some of it (an older kernel lacks part of the rights).
    Partial,
    /// None: the kernel has no Landlock, or it is disabled.
    None,
}

impl Outcome {
    /// What this outcome leaves unenforced, for warnings and refusals; `None`
    /// when everything is enforced.
    pub fn shortfall(&self) -> Option<String> {
        let missing = match self.abi {
            ..=0 => {
                "Landlock is not available in this kernel (Linux 5.13+ with `landlock` in the lsm= boot list), so nothing is confined"
            }
            1..=3 => {
                "this kernel's Landlock (ABI < 4) cannot restrict TCP ports, so connects and binds are not confined"
            }
            4 | 5 => "this kernel's Landlock (ABI < 6) cannot scope abstract sockets and signals",
            _ if self.level != Level::Full => "the kernel enforced only part of the rules",
            _ => return None,
        };
        Some(format!("Landlock ABI {}: {missing}", self.abi.max(0)))
    }

    /// One line for the start-up log and the self-test.
    pub fn describe(&self) -> String {
        match self.level {
            Level::Full => format!(
                "confined by Landlock ABI {}: files, TCP bind and connect, abstract sockets, signals, no programs run",
                self.abi
            ),
            Level::Partial | Level::None => format!(
                "NOT fully confined: {}",
                self.shortfall().unwrap_or_default()
            ),
        }
    }
}

/// Applies `plan` to this process (and every thread it starts later).
/// With `required`, anything short of full enforcement is an error;
/// otherwise it is logged as a warning.
pub fn apply(plan: &Plan, required: bool) -> Result<Outcome, ConfineError> {
    let threads = running_threads();
    if threads > 1 {
        return Err(ConfineError::Threads(threads));
    }
    plan.make_writable_dirs()?;
    let outcome = restrict(plan)?;
    match outcome.shortfall() {
        None => tracing::info!(target: "stockade::confine", "{}", outcome.describe()),
        Some(shortfall) if required => return Err(ConfineError::Required(shortfall)),
        Some(_) => tracing::warn!(target: "stockade::confine", "{}", outcome.describe()),
    }
    Ok(outcome)
}

/// Threads of this process, from `/proc/self/task` (1 when it cannot be
/// read: there is then nothing better to go on).
fn running_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|entries| entries.count())
        .unwrap_or(1)
}

fn restrict(plan: &Plan) -> Result<Outcome, ConfineError> {
    let kernel = |err: landlock::RulesetError| ConfineError::Kernel(err.to_string());
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    // Everything but running programs.
    let write = AccessFs::from_all(TARGET_ABI) & !AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(kernel)?
        .handle_access(AccessNet::from_all(TARGET_ABI))
        .map_err(kernel)?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(kernel)?
        .create()
        .map_err(kernel)?;
    for (path, access) in plan
        .read
        .keys()
        .map(|p| (p, read))
        .chain(plan.write.keys().map(|p| (p, write)))
    {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            // A system file this machine lacks (say, /etc/gai.conf) has
            // nothing to allow; a configured one was checked at load.
            Err(_) if !path.exists() => continue,
            Err(err) => {
                return Err(ConfineError::Path {
                    path: path.clone(),
                    reason: err.to_string(),
                });
            }
        };
        let access: BitFlags<AccessFs> = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(TARGET_ABI)
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(kernel)?;
    }
    for port in plan.connect.keys() {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(kernel)?;
    }
    for port in plan.bind.keys() {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::BindTcp))
            .map_err(kernel)?;
    }
    let status = ruleset.restrict_self().map_err(kernel)?;
    let abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        _ => 0,
    };
    let level = match status.ruleset {
        RulesetStatus::FullyEnforced => Level::Full,
        RulesetStatus::PartiallyEnforced => Level::Partial,
        RulesetStatus::NotEnforced => Level::None,
    };
    Ok(Outcome { abi, level })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_enforcement_has_no_shortfall() {
        let outcome = Outcome {
            abi: 7,
            level: Level::Full,
        };
        assert_eq!(outcome.shortfall(), None);
        assert!(outcome.describe().starts_with("confined by Landlock ABI 7"));
    }

    #[test]
    fn each_missing_feature_is_named() {
        let at = |abi, level| Outcome { abi, level }.shortfall().unwrap();
        assert!(at(0, Level::None).contains("not available"));
        assert!(at(3, Level::Partial).contains("TCP ports"));
        assert!(at(5, Level::Partial).contains("abstract sockets"));
        assert!(at(7, Level::Partial).contains("only part"));
    }
}
