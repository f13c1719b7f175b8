//! Every setting, once: its key, flag, description and whether it is secret. Each section's
//! file holds its own rows; [`all`] gathers them in reference order. Environment variable
//! names, the configuration reference (`docs/configuration.md`), `mcpgate.example.toml` and
//! `.env.example` are all derived from the rows, and a test checks them against the
//! [`Config`](super::Config) struct so that neither can drift.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::Config;

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted key, as in `mcpgate.toml` (`auth.jwks_uri`).
    pub key: &'static str,
    /// The command-line flag, when there is one.
    pub flag: Option<&'static str>,
    /// What it is, for the reference.
    pub doc: &'static str,
    /// Value shape, for the reference.
    pub kind: &'static str,
    /// Whether the value is masked when printed.
    pub secret: bool,
}

pub(super) const fn s(
    key: &'static str,
    flag: Option<&'static str>,
    kind: &'static str,
    doc: &'static str,
) -> Setting {
    Setting {
        key,
        flag,
        doc,
        kind,
        secret: false,
    }
}

pub(super) const fn secret(key: &'static str, kind: &'static str, doc: &'static str) -> Setting {
    Setting {
        key,
        flag: None,
        doc,
        kind,
        secret: true,
    }
}

/// Every setting, section by section, in the order the reference lists them.
pub fn all() -> impl Iterator<Item = &'static Setting> {
    [
        super::SETTINGS,
        super::upstream::SETTINGS,
        super::auth::SETTINGS,
        super::issuer::SETTINGS,
        super::session::SETTINGS,
        super::http::SETTINGS,
        super::policy::SETTINGS,
        super::audit::SETTINGS,
        super::log::SETTINGS,
    ]
    .into_iter()
    .flatten()
}

/// Shorter environment variable names the interface contract also accepts.
pub const ENV_ALIASES: &[(&str, &str)] = &[("MCPGATE_UPSTREAM_CMD", "upstream.command")];

/// The environment variable of a key: `MCPGATE_` and the key in upper case with `_` for `.`.
/// Whether `key` (a dotted key, or one inside a secret table such as `upstream.env.API_KEY`)
/// holds a secret, whose value is never printed.
pub fn is_secret(key: &str) -> bool {
    all().any(|s| {
        s.secret
            && (key == s.key
                || key
                    .strip_prefix(s.key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('[')))
    })
}

pub fn env_name(key: &str) -> String {
    format!("MCPGATE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// A figment provider of the `MCPGATE_*` variables among `env` that name a setting.
pub(super) fn env_provider(env: impl IntoIterator<Item = (String, String)>) -> EnvSettings {
    let mut dict = Dict::new();
    let env: Vec<(String, String)> = env.into_iter().collect();
    for setting in all() {
        let name = env_name(setting.key);
        let alias = ENV_ALIASES
            .iter()
            .find(|(_, key)| *key == setting.key)
            .map(|(alias, _)| *alias);
        let found = env
            .iter()
            .find(|(k, _)| *k == name)
            .or_else(|| alias.and_then(|alias| env.iter().find(|(k, _)| k == alias)));
        if let Some((_, raw)) = found {
            // Plain secrets stay exactly as written (`0123` must not become the number 123);
            // everything else is typed (numbers, booleans, lists, inline tables).
            let value: Value = if setting.secret && !setting.kind.contains("table") {
                Value::from(raw.clone())
            } else {
                raw.parse().expect("parsing a figment value is infallible")
            };
            let nested = figment::util::nest(setting.key, value);
            if let Value::Dict(_, d) = nested {
                dict = merge(dict, d);
            }
        }
    }
    EnvSettings(dict)
}

fn merge(mut a: Dict, b: Dict) -> Dict {
    for (k, v) in b {
        match (a.remove(&k), v) {
            (Some(Value::Dict(t, x)), Value::Dict(_, y)) => {
                a.insert(k, Value::Dict(t, merge(x, y)));
            }
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    a
}

pub(super) struct EnvSettings(Dict);

impl Provider for EnvSettings {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| env_name(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn default_of(key: &str) -> String {
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
    let mut value = &defaults;
    for part in key.split('.') {
        value = &value[part];
    }
    match value {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => format!("`{s}`"),
        serde_json::Value::Array(a) if a.is_empty() => "(empty)".into(),
        serde_json::Value::Object(o) if o.is_empty() => "(empty)".into(),
        other => format!("`{other}`"),
    }
}

fn toml_default(key: &str) -> String {
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
    let mut value = &defaults;
    for part in key.split('.') {
        value = &value[part];
    }
    match value {
        serde_json::Value::Null => "\"\"".into(),
        other => inline_toml(other),
    }
}

/// A value in TOML's inline syntax (null members left out).
fn inline_toml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(o) => {
            let members: Vec<String> = o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", inline_toml(v)))
                .collect();
            if members.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", members.join(", "))
            }
        }
        serde_json::Value::Array(a) => {
            format!(
                "[{}]",
                a.iter().map(inline_toml).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// `docs/configuration.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from crates/gateway/src/config/settings.rs; a test keeps it in step. \
         Regenerate with `MCPGATE_BLESS=1 cargo test -p mcpgate config_files`. -->\n\n\
         mcpgate reads its settings from, in increasing precedence: built-in defaults, the \
         configuration file (`mcpgate.toml` in the working directory, or `--config FILE`), \
         `MCPGATE_*` environment variables, and command-line flags. Every value is checked at \
         start; `mcpgate check-config` prints the effective configuration (secrets masked) \
         and exits non-zero naming each key that is wrong.\n\n\
         Durations are written `30s`, `5m`, `1h` (or a number of seconds). Lists are TOML \
         arrays in the file and comma-separated in flags and environment variables.\n\n\
         | key | environment | flag | default | |\n|---|---|---|---|---|\n",
    );
    for setting in all() {
        let flag = setting.flag.map(|f| format!("`{f}`")).unwrap_or_default();
        let secret = if setting.secret {
            " **Secret**: masked when printed."
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} ({}).{} |\n",
            setting.key,
            env_name(setting.key),
            flag,
            default_of(setting.key),
            setting.doc.trim_end_matches('.'),
            setting.kind,
            secret
        ));
    }
    out
}

/// `mcpgate.example.toml`: every setting, commented out at its default.
pub fn toml_example() -> String {
    let mut out = String::from(
        "# mcpgate.example.toml: every setting with its default, commented out.\n\
         # Generated from crates/gateway/src/config/settings.rs (see docs/configuration.md).\n\
         # Copy to mcpgate.toml and uncomment what you change.\n",
    );
    let mut tables: Vec<&str> = Vec::new();
    for setting in all() {
        let table = setting.key.rsplit_once('.').map_or("", |(t, _)| t);
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    for table in tables {
        if !table.is_empty() {
            out.push_str(&format!("\n[{table}]\n"));
        }
        for setting in all().filter(|s| s.key.rsplit_once('.').map_or("", |(t, _)| t) == table) {
            let name = setting.key.rsplit('.').next().unwrap_or(setting.key);
            out.push('\n');
            for line in wrap(setting.doc, 96) {
                out.push_str(&format!("# {line}\n"));
            }
            out.push_str(&format!("# {name} = {}\n", toml_default(setting.key)));
        }
    }
    out
}

/// `.env.example`: every setting as an environment variable.
pub fn env_example() -> String {
    let mut out = String::from(
        "# .env.example: every mcpgate setting as an environment variable, commented out.\n\
         # Generated from crates/gateway/src/config/settings.rs (see docs/configuration.md).\n\
         # Lists are comma-separated; tables and arrays of tables use TOML inline syntax.\n",
    );
    for setting in all() {
        out.push('\n');
        for line in wrap(setting.doc, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        let default = toml_default(setting.key);
        let default = default.trim_matches('"');
        let default = if default == "[]" { "" } else { default };
        out.push_str(&format!("# {}={}\n", env_name(setting.key), default));
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) if all().all(|s| s.key != prefix) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn every_config_field_has_exactly_one_setting() {
        let mut keys = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut keys,
        );
        let table: Vec<&str> = all().map(|s| s.key).collect();
        for key in &keys {
            assert!(
                table.contains(&key.as_str()),
                "config field `{key}` has no entry in SETTINGS"
            );
        }
        for key in &table {
            assert!(
                keys.iter().any(|k| k == key),
                "SETTINGS entry `{key}` is not a config field"
            );
            assert_eq!(
                table.iter().filter(|k| *k == key).count(),
                1,
                "`{key}` is listed twice"
            );
        }
    }

    #[test]
    fn env_names_follow_the_interface_contract() {
        assert_eq!(env_name("auth.issuer_url"), "MCPGATE_AUTH_ISSUER_URL");
        assert_eq!(env_name("auth.mode"), "MCPGATE_AUTH_MODE");
        assert_eq!(env_name("upstream.url"), "MCPGATE_UPSTREAM_URL");
        assert_eq!(env_name("dev"), "MCPGATE_DEV");
    }

    /// docs/configuration.md, mcpgate.example.toml and .env.example are generated from the
    /// table; this keeps the committed copies in step (`MCPGATE_BLESS=1` rewrites them).
    #[test]
    fn config_files_match_the_settings_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let files = [
            (root.join("docs/configuration.md"), reference_markdown()),
            (root.join("mcpgate.example.toml"), toml_example()),
            (root.join(".env.example"), env_example()),
        ];
        for (path, expected) in files {
            if std::env::var_os("MCPGATE_BLESS").is_some() {
                std::fs::write(&path, &expected).unwrap();
                continue;
            }
            let actual = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                actual == expected,
                "{} is out of date: run `MCPGATE_BLESS=1 cargo test -p mcpgate config_files`",
                path.display()
            );
        }
    }

    #[test]
    fn example_toml_parses_into_the_default_config() {
        // Uncomment every setting that has a default value: the keys must sit in the right
        // tables and the defaults must read back.
        let uncommented: String = toml_example()
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.contains(" = ")
                        && !rest.ends_with(" = \"\"")
                        && rest.split(' ').next().is_some_and(|k| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest.to_owned()
                }
                _ => line.to_owned(),
            })
            .map(|l| l + "\n")
            .collect();
        let figment =
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(
                    <figment::providers::Toml as figment::providers::Format>::string(&uncommented),
                );
        figment
            .extract::<Config>()
            .expect("the example file is valid");
    }

    #[test]
    fn secrets_are_marked() {
        for key in [
            "auth.hmac_secret",
            "auth.introspection_client_secret",
            "session.key",
            "auth.static_tokens",
            "upstream.headers",
        ] {
            assert!(
                all().any(|s| s.key == key && s.secret),
                "{key} must be secret"
            );
        }
    }
}
