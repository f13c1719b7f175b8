//! `/authorize`: the authorization request checked in order ([`request`]); the sign-in and
//! consent pages and the code they lead to come next.

pub mod request;
