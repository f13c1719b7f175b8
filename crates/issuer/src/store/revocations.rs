//! placeholder
/// x
pub const GRANT_ID_CLAIM: &str = "grant_id";
/// x
pub struct Revocations;
