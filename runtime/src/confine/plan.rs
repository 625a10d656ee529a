//! What a configuration needs of the host: the directories it reads and
//! writes and the TCP ports it connects to and binds. Everything else is
//! given up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, StockadeConfig};
use stockade_host_api::fs::FsMode;

/// System files every serving process reads: name resolution for egress
/// and shipping destinations, the CA certificates, and the few kernel
/// figures the sandbox and the audit trail look at.
const SYSTEM_READS: &[(&str, &str)] = &[
    ("/etc/hosts", "name resolution"),
    ("/etc/resolv.conf", "name resolution"),
    ("/etc/nsswitch.conf", "name resolution"),
    ("/etc/host.conf", "name resolution"),
    ("/etc/gai.conf", "name resolution"),
    // The system trust store (and the files its links point to), for
    // HTTPS clients that verify against it.
    ("/etc/ssl/certs", "the system's CA certificates"),
    ("/etc/ssl/cert.pem", "the system's CA certificates"),
    ("/etc/pki/tls/certs", "the system's CA certificates"),
    ("/etc/pki/ca-trust", "the system's CA certificates"),
    ("/usr/share/ca-certificates", "the system's CA certificates"),
    (
        "/usr/local/share/ca-certificates",
        "the system's CA certificates",
    ),
    (
        "/proc/self",
        "this process's own limits, memory map and descriptors",
    ),
    ("/proc/swaps", "whether swap is on, for the page reset"),
    (
        "/proc/sys/kernel/hostname",
        "the host name in syslog records",
    ),
];

/// The process's needs, each with the reason it is there (for the
/// self-test's report and for reload refusals).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files and directories read (directories: everything beneath).
    pub read: BTreeMap<PathBuf, String>,
    /// Directories read and written (no program is run from them).
    pub write: BTreeMap<PathBuf, String>,
    /// TCP ports connected to, on any address.
    pub connect: BTreeMap<u16, String>,
    /// TCP ports bound (0: an ephemeral one).
    pub bind: BTreeMap<u16, String>,
}

/// What the command line adds to the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// `--dev-secrets FILE`.
    pub dev_secrets: Option<&'a Path>,
    /// `--http ADDR`.
    pub http: Option<SocketAddr>,
}

impl Plan {
    /// The needs of serving `config` (read from `config_path`, with
    /// `manifest_errors` for the manifests that did not load).
    pub fn for_serving(
        config_path: &Path,
        config: &StockadeConfig,
        manifest_errors: &[ConfigError],
        extras: Extras<'_>,
    ) -> Self {
        let mut plan = Self::default();
        for (path, why) in SYSTEM_READS {
            if Path::new(path).exists() {
                plan.read.insert(PathBuf::from(path), (*why).into());
            }
        }
        for variable in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            if let Some(path) = std::env::var_os(variable) {
                plan.read
                    .entry(absolute(Path::new(&path)))
                    .or_insert_with(|| format!("${variable}"));
            }
        }
        // Files are allowed through their directories: a file replaced by
        // a new one (a rebuilt component, a rotated certificate or token)
        // is a new inode that a rule on the old file would not cover.
        plan.read_dir_of(config_path, "the configuration (read again on reload)");
        for error in manifest_errors {
            if let Some(path) = error_path(error) {
                plan.read_dir_of(path, &format!("a tool manifest that did not load: {error}"));
            }
        }
        for tool in &config.tools {
            plan.read_dir_of(&tool.path, "a tool manifest (read again on reload)");
            plan.read_dir_of(&tool.component, "a tool component");
            for grant in &tool.fs {
                let why = format!("tool {}: fs grant {}", tool.name, grant.guest_path);
                match grant.mode {
                    FsMode::ReadOnly => plan.read.insert(grant.host_dir.clone(), why),
                    FsMode::ReadWrite => plan.write.insert(grant.host_dir.clone(), why),
                };
            }
            for rule in &tool.egress.rules {
                plan.connect
                    .entry(rule.port)
                    .or_insert_with(|| format!("tool {}: egress", tool.name));
            }
        }
        plan.write.insert(
            absolute(&config.server.cache_dir),
            "server.cache_dir".into(),
        );
        plan.write
            .insert(absolute(&config.control.dir), "control.dir".into());
        if let Some(dir) = &config.audit.dir {
            plan.write.insert(absolute(dir), "audit.dir".into());
        }
        plan.named_files(config, extras);
        plan.destinations(config);
        if let Some(addr) = extras.http.or(config.http.listen) {
            plan.bind.insert(addr.port(), "the HTTP listener".into());
        }
        if let Some(addr) = config.admin.listen {
            plan.bind.insert(addr.port(), "admin.listen".into());
        }
        plan.prune_covered();
        plan
    }

    /// Every key, certificate and credential file the configuration names.
    fn named_files(&mut self, config: &StockadeConfig, extras: Extras<'_>) {
        let mut files: Vec<(&Path, &str)> = Vec::new();
        if let Some(file) = extras.dev_secrets {
            files.push((file, "--dev-secrets"));
        }
        if let Some(lock) = &config.lock.file {
            files.push((lock, "lock.file"));
        }
        if let Some(key) = &config.lock.public_key_file {
            files.push((key, "lock.public_key_file"));
        }
        if let Some(key) = &config.audit.signing_key_file {
            files.push((key, "audit.signing_key_file"));
        }
        if let Some(ca) = config
            .audit
            .syslog
            .as_ref()
            .and_then(|s| s.ca_file.as_ref())
        {
            files.push((ca, "audit.syslog.ca_file"));
        }
        if let Some(ca) = config.audit.otlp.as_ref().and_then(|s| s.ca_file.as_ref()) {
            files.push((ca, "audit.otlp.ca_file"));
        }
        if let Some(tls) = &config.http.tls {
            files.push((&tls.cert, "http.tls.cert (watched for rotation)"));
            files.push((&tls.key, "http.tls.key (watched for rotation)"));
            if let Some(ca) = &tls.client_ca {
                files.push((ca, "http.tls.client_ca"));
            }
        }
        if let Some(introspection) = config
            .auth
            .oauth
            .as_ref()
            .and_then(|o| o.introspection.as_ref())
        {
            files.push((
                &introspection.secret_file,
                "auth.oauth.introspection_secret_file",
            ));
        }
        if let Some(vault) = &config.vault {
            if let Some(ca) = &vault.ca_bundle {
                files.push((ca, "vault.ca_bundle"));
            }
            match &vault.auth {
                crate::secrets::VaultAuth::TokenFile(file) => {
                    files.push((file, "vault.token_file (read at each login)"))
                }
                crate::secrets::VaultAuth::AppRole {
                    role_id_file,
                    secret_id_file,
                    ..
                } => {
                    files.push((role_id_file, "vault.role_id_file (read at each login)"));
                    files.push((secret_id_file, "vault.secret_id_file (read at each login)"));
                }
            }
        }
        for (file, why) in files {
            self.read_dir_of(file, why);
        }
    }

    /// The ports of every service the configuration talks to.
    fn destinations(&mut self, config: &StockadeConfig) {
        let mut urls: Vec<(&str, &str)> = Vec::new();
        if let Some(vault) = &config.vault {
            urls.push((&vault.address, "vault.address"));
        }
        if let Some(otlp) = &config.audit.otlp {
            urls.push((&otlp.endpoint, "audit.otlp.endpoint"));
        }
        if let Some(webhook) = &config.alerts.webhook {
            urls.push((webhook, "alerts.webhook"));
        }
        if let Some(oauth) = &config.auth.oauth {
            urls.push((&oauth.issuer, "auth.oauth.issuer"));
            if let Some(jwks) = &oauth.jwks_uri {
                urls.push((jwks, "auth.oauth.jwks_uri"));
            }
            if let Some(introspection) = &oauth.introspection {
                urls.push((&introspection.endpoint, "auth.oauth.introspection_endpoint"));
            }
        }
        for (url, why) in urls {
            if let Some(port) = url_port(url) {
                self.connect.entry(port).or_insert_with(|| why.into());
            }
        }
        if let Some(syslog) = &config.audit.syslog
            && let Some(port) = syslog
                .address
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
        {
            self.connect
                .entry(port)
                .or_insert_with(|| "audit.syslog.address".into());
        }
    }

    fn read_dir_of(&mut self, file: &Path, why: &str) {
        self.read
            .entry(directory_of(file))
            .or_insert_with(|| why.into());
    }

    /// Drops read entries already beneath a written directory.
    fn prune_covered(&mut self) {
        let written: Vec<PathBuf> = self.write.keys().cloned().collect();
        self.read
            .retain(|path, _| !written.iter().any(|dir| path.starts_with(dir)));
    }

    /// Creates the directories written to that do not exist yet (private
    /// to this user), so they can carry rules.
    pub fn make_writable_dirs(&self) -> Result<(), super::ConfineError> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in self.write.keys() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|err| super::ConfineError::Path {
                    path: dir.clone(),
                    reason: err.to_string(),
                })?;
        }
        Ok(())
    }

    /// Whether `path` is beneath a directory (or is a file) this plan reads
    /// or writes.
    pub fn covers_read(&self, path: &Path) -> bool {
        self.read
            .keys()
            .chain(self.write.keys())
            .any(|dir| path.starts_with(dir))
    }

    /// Whether `path` is beneath a directory this plan writes.
    pub fn covers_write(&self, path: &Path) -> bool {
        self.write.keys().any(|dir| path.starts_with(dir))
    }

    /// The first need of `wanted` this plan does not cover, described for
    /// a reload refusal; `None` when the running process can serve it.
    pub fn shortfall(&self, wanted: &Plan) -> Option<String> {
        if let Some((path, why)) = wanted.read.iter().find(|(p, _)| !self.covers_read(p)) {
            return Some(format!("reading {} ({why})", path.display()));
        }
        if let Some((path, why)) = wanted.write.iter().find(|(p, _)| !self.covers_write(p)) {
            return Some(format!("writing {} ({why})", path.display()));
        }
        if let Some((port, why)) = first_missing(&wanted.connect, &self.connect) {
            return Some(format!("connecting to TCP port {port} ({why})"));
        }
        if let Some((port, why)) = first_missing(&wanted.bind, &self.bind) {
            return Some(format!("binding TCP port {port} ({why})"));
        }
        None
    }

    /// The plan as lines for people: what stays reachable, and why.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (path, why) in &self.read {
            lines.push(format!("read        {}  ({why})", path.display()));
        }
        for (path, why) in &self.write {
            lines.push(format!("read-write  {}  ({why})", path.display()));
        }
        for (port, why) in &self.connect {
            lines.push(format!("connect     TCP port {port}  ({why})"));
        }
        for (port, why) in &self.bind {
            lines.push(format!("bind        TCP port {port}  ({why})"));
        }
        lines
    }
}

/// The plan a serving process was confined to, and the command line that
/// shaped it: a reload may not need more.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The plan applied at start.
    pub plan: Plan,
    /// `--dev-secrets FILE`.
    pub dev_secrets: Option<PathBuf>,
    /// `--http ADDR`.
    pub http: Option<SocketAddr>,
}

impl Kept {
    /// What serving `config` would need beyond the plan, if anything.
    pub fn shortfall(
        &self,
        config_path: &Path,
        config: &StockadeConfig,
        manifest_errors: &[ConfigError],
    ) -> Option<String> {
        let extras = Extras {
            dev_secrets: self.dev_secrets.as_deref(),
            http: self.http,
        };
        let wanted = Plan::for_serving(config_path, config, manifest_errors, extras);
        self.plan.shortfall(&wanted)
    }
}

/// The first port of `wanted` that `kept` lacks, with its reason.
fn first_missing<'a>(
    wanted: &'a BTreeMap<u16, String>,
    kept: &BTreeMap<u16, String>,
) -> Option<(&'a u16, &'a String)> {
    wanted.iter().find(|(port, _)| !kept.contains_key(port))
}

/// The port a URL names, or its scheme's default.
fn url_port(url: &str) -> Option<u16> {
    let uri: http::Uri = url.parse().ok()?;
    uri.port_u16().or(match uri.scheme_str()? {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })
}

/// `path` made absolute (resolving links where it exists), as rules and
/// comparisons need.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// The directory holding `file`, made absolute.
pub fn directory_of(file: &Path) -> PathBuf {
    let absolute = absolute(file);
    absolute.parent().unwrap_or(&absolute).to_owned()
}

fn error_path(error: &ConfigError) -> Option<&Path> {
    match error {
        ConfigError::Read { path, .. }
        | ConfigError::Parse { path, .. }
        | ConfigError::Invalid { path, .. } => Some(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(read: &[&str], write: &[&str], connect: &[u16], bind: &[u16]) -> Plan {
        Plan {
            read: read.iter().map(|p| (p.into(), "r".into())).collect(),
            write: write.iter().map(|p| (p.into(), "w".into())).collect(),
            connect: connect.iter().map(|p| (*p, "c".into())).collect(),
            bind: bind.iter().map(|p| (*p, "b".into())).collect(),
        }
    }

    #[test]
    fn a_narrower_plan_fits() {
        let running = plan(&["/srv/tools"], &["/srv/data"], &[443], &[8080]);
        let wanted = plan(
            &["/srv/tools/more", "/srv/data/x"],
            &["/srv/data/y"],
            &[443],
            &[],
        );
        assert_eq!(running.shortfall(&wanted), None);
    }

    #[test]
    fn each_wider_need_is_named() {
        let running = plan(&["/srv/tools"], &["/srv/data"], &[443], &[8080]);
        let cases = [
            (plan(&["/srv/other"], &[], &[], &[]), "reading /srv/other"),
            (plan(&[], &["/srv/tools"], &[], &[]), "writing /srv/tools"),
            (plan(&[], &[], &[8443], &[]), "connecting to TCP port 8443"),
            (plan(&[], &[], &[], &[9090]), "binding TCP port 9090"),
        ];
        for (wanted, expected) in cases {
            let found = running.shortfall(&wanted).unwrap();
            assert!(found.starts_with(expected), "{found}");
        }
    }

    #[test]
    fn a_sibling_with_a_common_prefix_is_not_beneath() {
        let running = plan(&["/srv/tools"], &[], &[], &[]);
        let wanted = plan(&["/srv/tools-evil"], &[], &[], &[]);
        assert!(running.shortfall(&wanted).is_some());
    }

    #[test]
    fn urls_give_their_port_or_the_scheme_default() {
        assert_eq!(url_port("https://vault.internal:8200"), Some(8200));
        assert_eq!(url_port("https://issuer.example"), Some(443));
        assert_eq!(url_port("http://127.0.0.1/hook"), Some(80));
        assert_eq!(url_port("not a url"), None);
    }
}
