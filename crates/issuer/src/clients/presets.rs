//! The MCP clients that use fixed callbacks, by name, so that an operator who closes open
//! registration can still admit them: `preset = "vscode"` in `[[issuer.clients]]`, or
//! `mcpgate clients add --preset vscode`.
//!
//! Each preset is metadata as the client would register it. Loopback callbacks are written
//! without a port where the client picks one at run time; a loopback redirect URI matches the
//! same URI with any port (RFC 8252 §7.3). Redirect URIs the operator adds are kept next to
//! the preset's: ChatGPT's per-connector callback (`https://chatgpt.com/connector/oauth/<id>`,
//! shown when the connector is created) is one.
//!
//! ```
//! use mcpgate_issuer::clients::presets;
//!
//! let vscode = presets::find("vscode").unwrap();
//! assert!(vscode.redirect_uris.contains(&"https://vscode.dev/redirect"));
//! assert!(presets::find("VSCode").is_none(), "names are exact");
//! ```

use serde_json::{Map, Value, json};

/// A client known by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Its name in configuration and on the command line.
    pub name: &'static str,
    /// The name shown on the consent page.
    pub client_name: &'static str,
    /// Its callbacks.
    pub redirect_uris: &'static [&'static str],
    /// How it authenticates at the token endpoint unless the operator says otherwise.
    pub token_endpoint_auth_method: &'static str,
    /// What it is, for `--help` and the docs.
    pub about: &'static str,
}

/// Every preset.
pub const ALL: &[Preset] = &[
    Preset {
        name: "claude",
        client_name: "Claude",
        redirect_uris: &[
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback",
        ],
        token_endpoint_auth_method: "none",
        about: "Claude (claude.ai, Claude Desktop, the mobile apps): custom connector with an OAuth client ID",
    },
    Preset {
        name: "claude-code",
        client_name: "Claude Code",
        redirect_uris: &["http://localhost/callback", "http://127.0.0.1/callback"],
        token_endpoint_auth_method: "none",
        about: "Claude Code (`claude mcp add --client-id`): loopback callback on any port",
    },
    Preset {
        name: "chatgpt",
        client_name: "ChatGPT",
        redirect_uris: &["https://chatgpt.com/connector_platform_oauth_redirect"],
        token_endpoint_auth_method: "client_secret_post",
        about: "ChatGPT connectors with a client ID and secret; add the connector's own callback (https://chatgpt.com/connector/oauth/<id>) as a redirect URI",
    },
    Preset {
        name: "cursor",
        client_name: "Cursor",
        redirect_uris: &[
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://www.cursor.com/agents/mcp/oauth/callback",
            "http://localhost/callback",
        ],
        token_endpoint_auth_method: "none",
        about: "Cursor (desktop app, its web agents and cursor-agent)",
    },
    Preset {
        name: "vscode",
        client_name: "Visual Studio Code",
        redirect_uris: &["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
        token_endpoint_auth_method: "none",
        about: "VS Code (desktop and vscode.dev)",
    },
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    ALL.iter().find(|p| p.name == name)
}

/// The names of every preset, for error messages.
pub fn names() -> String {
    ALL.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl Preset {
    /// The preset as client metadata (RFC 7591 §2), to be checked like any other.
    pub fn metadata(&self) -> Map<String, Value> {
        let Value::Object(object) = json!({
            "client_name": self.client_name,
            "redirect_uris": self.redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "application_type": "native",
        }) else {
            unreachable!("a JSON object literal")
        };
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::metadata::{ClientMetadata, Source};
    use crate::clients::redirect_uri::AllowList;

    #[test]
    fn every_preset_passes_the_checks_every_client_passes() {
        for preset in ALL {
            let m = ClientMetadata::from_object(
                &preset.metadata(),
                Source::Static,
                &AllowList::default(),
            )
            .unwrap_or_else(|e| panic!("{}: {}", preset.name, e.description));
            assert_eq!(m.redirect_uris.len(), preset.redirect_uris.len());
        }
    }

    #[test]
    fn loopback_callbacks_match_the_ports_clients_pick() {
        let code = ClientMetadata::from_object(
            &find("claude-code").unwrap().metadata(),
            Source::Static,
            &AllowList::default(),
        )
        .unwrap();
        assert!(
            code.redirect_uri("http://localhost:54321/callback")
                .is_some()
        );
        assert!(code.redirect_uri("http://localhost:54321/other").is_none());
        let vscode = ClientMetadata::from_object(
            &find("vscode").unwrap().metadata(),
            Source::Static,
            &AllowList::default(),
        )
        .unwrap();
        assert!(vscode.redirect_uri("http://127.0.0.1:33418").is_some());
        assert!(vscode.redirect_uri("https://vscode.dev/redirect").is_some());
        assert!(
            vscode
                .redirect_uri("https://vscode.dev/redirect/x")
                .is_none()
        );
    }
}
