//! Resource indicators (RFC 8707, AS-06): which protected resources this issuer makes tokens
//! for, and the one an authorization or token request names.
//!
//! A presented `resource` is compared in its normal form (RFC 3986 §6: case of scheme and
//! host, dot segments, one trailing slash), so `https://MCP.example.com/mcp/` names
//! `https://mcp.example.com/mcp`; anything else is `invalid_target`. A request without
//! `resource` gets the only resource there is (clients of older revisions omit it); with
//! several, it must say which.
//!
//! ```
//! use mcpgate_issuer::resource::Resources;
//!
//! let resources = Resources::new(["https://mcp.example.com/mcp"]).unwrap();
//! assert_eq!(resources.requested(Some("https://mcp.example.com/mcp/")).unwrap().as_str(), "https://mcp.example.com/mcp");
//! assert!(resources.requested(Some("https://evil.example/mcp")).is_err());
//! ```

use mcpgate_guard::ResourceUrl;

use crate::error::{ErrorCode, OAuthError};

/// The resources tokens may be for.
#[derive(Debug, Clone)]
pub struct Resources(Vec<ResourceUrl>);

impl Resources {
    /// The resources, each a valid resource URL.
    pub fn new<'a>(resources: impl IntoIterator<Item = &'a str>) -> Result<Resources, String> {
        let list = resources
            .into_iter()
            .map(|r| ResourceUrl::parse(r).map_err(|e| format!("`{r}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err("at least one resource is needed".into());
        }
        Ok(Resources(list))
    }

    /// The resource a request names (or the only one, when it names none).
    pub fn requested(&self, resource: Option<&str>) -> Result<ResourceUrl, OAuthError> {
        match resource {
            None if self.0.len() == 1 => Ok(self.0[0].clone()),
            None => Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "`resource` is required: this server issues tokens for several resources",
            )),
            Some(presented) => {
                let parsed = ResourceUrl::parse(presented).map_err(|e| {
                    OAuthError::new(ErrorCode::InvalidTarget, format!("`resource` {e}"))
                })?;
                self.0
                    .iter()
                    .find(|r| **r == parsed)
                    .cloned()
                    .ok_or_else(|| {
                        OAuthError::new(
                            ErrorCode::InvalidTarget,
                            format!(
                                "this server does not issue tokens for that resource (it does for: {})",
                                self.0
                                    .iter()
                                    .map(ResourceUrl::as_str)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                        )
                    })
            }
        }
    }

    /// Every resource.
    pub fn all(&self) -> &[ResourceUrl] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Resources {
        Resources::new(["https://mcp.example.com/mcp"]).unwrap()
    }

    #[test]
    fn as_06_equivalent_spellings_name_the_same_resource() {
        for presented in [
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/mcp/",
            "HTTPS://MCP.EXAMPLE.COM/mcp",
            "https://mcp.example.com:443/mcp",
            "https://mcp.example.com/x/../mcp",
        ] {
            assert_eq!(
                one().requested(Some(presented)).unwrap().as_str(),
                "https://mcp.example.com/mcp",
                "{presented}"
            );
        }
    }

    #[test]
    fn as_06_another_resource_is_invalid_target() {
        for presented in [
            "https://mcp.example.com/other",
            "https://mcp.example.com/mcp/more",
            "https://mcp.example.com/MCP",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com/mcp?x=1",
            "https://mcp.example.com/mcp#x",
            "not a url",
        ] {
            let e = one().requested(Some(presented)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidTarget, "{presented}");
        }
    }

    #[test]
    fn no_resource_means_the_only_one_and_is_refused_when_there_are_several() {
        assert!(one().requested(None).is_ok());
        let two = Resources::new(["https://a.example/mcp", "https://b.example/mcp"]).unwrap();
        assert_eq!(
            two.requested(None).unwrap_err().code,
            ErrorCode::InvalidTarget
        );
        assert!(Resources::new([]).is_err());
    }
}
