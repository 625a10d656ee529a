//! Refuses config text that holds what looks like a literal credential.
//! Secrets belong in Vault; files hold references only.

/// Words that mark a key as holding something sensitive.
const SECRETISH: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "credential",
    "private",
    "auth",
    "bearer",
    "key",
];

/// Prefixes of well-known credential formats, refused under any key.
const TOKEN_PREFIXES: &[&str] = &[
    "hvs.",
    "hvb.",
    "hvr.",
    "s.",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "sk-",
    "sk_live_",
    "rk_live_",
    "AKIA",
    "ASIA",
    "AIza",
    "eyJ",
    "-----BEGIN",
];

/// Keys whose values are references or digests: only the token-prefix
/// rule applies to them.
const REFERENCE_KEYS: &[&str] = &["vault", "sha256", "component", "host", "url"];

/// Key endings that name a file, directory or mount rather than hold a value.
const PATH_KEY_ENDINGS: &[&str] = &["_file", "_path", "_dir", "_bundle", "_mount"];

/// File extensions that mark a word as a file name, not a token.
const FILE_EXTENSIONS: &[&str] = &[".wasm", ".toml", ".json", ".pem", ".crt", ".txt"];

/// Returns the dotted key of the first value that looks like a literal
/// credential, if any.
pub fn find(value: &toml::Value) -> Option<String> {
    walk(value, "")
}

fn walk(value: &toml::Value, path: &str) -> Option<String> {
    match value {
        toml::Value::Table(table) => table.iter().find_map(|(key, v)| {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(v, &child)
        }),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"))),
        toml::Value::String(text) => looks_like_credential(path, text).then(|| path.to_owned()),
        _ => None,
    }
}

fn last_key(path: &str) -> &str {
    let key = path.rsplit('.').next().unwrap_or(path);
    key.split('[').next().unwrap_or(key)
}

/// Every string is split into words (a `format` such as `Bearer …{}` hides
/// its token after a space); a word with a well-known token prefix is
/// refused under any key, and a high-entropy word under a key that names
/// something sensitive (or under `format`).
fn looks_like_credential(path: &str, text: &str) -> bool {
    let key = last_key(path).to_ascii_lowercase();
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '='))
        .map(|word| word.replace("{}", ""))
        .filter(|word| !word.is_empty())
        .collect();
    if words.iter().any(|word| token_shaped(word)) {
        return true;
    }
    if REFERENCE_KEYS.contains(&key.as_str())
        || PATH_KEY_ENDINGS.iter().any(|end| key.ends_with(end))
    {
        return false;
    }
    let sensitive = key == "format" || SECRETISH.iter().any(|w| key.contains(w));
    sensitive && words.iter().any(|word| high_entropy(word))
}

fn token_shaped(word: &str) -> bool {
    word.len() >= 12
        && TOKEN_PREFIXES.iter().any(|p| word.starts_with(p))
        && !FILE_EXTENSIONS.iter().any(|ext| word.ends_with(ext))
}

/// A long word with mixed character classes and high Shannon entropy.
fn high_entropy(word: &str) -> bool {
    if word.len() < 16 {
        return false;
    }
    let classes = [
        word.bytes().any(|b| b.is_ascii_lowercase()),
        word.bytes().any(|b| b.is_ascii_uppercase()),
        word.bytes().any(|b| b.is_ascii_digit()),
        word.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return false;
    }
    let mut counts = [0u32; 256];
    for b in word.bytes() {
        counts[b as usize] += 1;
    }
    let len = word.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / len;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Option<String> {
        find(&toml::from_str(text).unwrap())
    }

    #[test]
    fn refuses_literal_credentials_naming_the_key() {
        // Assembled at run time so the tree holds no token-shaped literal.
        let vault_token = format!("[vault]\ntoken = \"hvs.{}\"", "CAESIJ3x9sQ2rT7yZk1mN0pLw");
        assert_eq!(scan(&vault_token).as_deref(), Some("vault.token"));
        assert_eq!(
            scan("[secrets.api]\napi_key = \"Zx81kQp0Lm2Vn7Tr4Yw9\"").as_deref(),
            Some("secrets.api.api_key")
        );
        assert_eq!(
            scan("[x]\nnote = \"ghp_abcdefghijklmnopqrstuvwxyz0123456789\"").as_deref(),
            Some("x.note")
        );
        // A slash no longer hides a high-entropy value.
        assert_eq!(
            scan("[secrets.api]\napi_key = \"Zx81kQp0/Lm2Vn7Tr4Yw9\"").as_deref(),
            Some("secrets.api.api_key")
        );
        // The format is read word by word, under its own rule.
        let in_format = format!(
            "[secrets.api]\nformat = \"Bearer ghp_{}{{}}\"",
            "abcdefghijklmnopqrstuvwxyz0123"
        );
        assert_eq!(scan(&in_format).as_deref(), Some("secrets.api.format"));
        assert_eq!(
            scan("[secrets.api]\nformat = \"Token Q9x/Lm2Vn7Tr4Yw9zK1p {}\"").as_deref(),
            Some("secrets.api.format")
        );
    }

    #[test]
    fn accepts_references_digests_files_and_prose() {
        assert_eq!(
            scan("[secrets.api]\nvault = \"secret/data/tools/api#token\""),
            None
        );
        assert_eq!(
            scan(
                "[tool]\nsha256 = \"f7011a1f3f4723fc4dd6a6d9685e0ca4dd80eec284c565eb73f98c970640e585\""
            ),
            None
        );
        assert_eq!(
            scan("[vault]\ntoken_file = \"/run/secrets/vault-token\""),
            None
        );
        assert_eq!(scan("[access]\ngroups = [\"analysts\"]"), None);
        assert_eq!(
            scan("[secrets.api]\nheader = \"Authorization\"\nformat = \"Bearer {}\""),
            None
        );
        assert_eq!(scan("[x]\npassword = \"changeme\""), None);
        assert_eq!(
            scan("[vault]\nca_bundle = \"/etc/stockade/Zx81kQp0Lm2Vn7Tr4Yw9.pem\""),
            None
        );
        assert_eq!(scan("[tool]\ncomponent = \"sk-learn-tool-v2.wasm\""), None);
    }
}
