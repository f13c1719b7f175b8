//! `/authorize`: the authorization request checked in order ([`request`]), the pages that
//! sign the person in and ask for their consent ([`flow`]), and the code they lead to
//! ([`code`]). Between pages the request travels sealed ([`pending`]); the browser holds a
//! sign-in and a CSRF token in two cookies ([`cookies`], [`csrf`]).

pub mod code;
pub mod cookies;
pub mod csrf;
pub mod flow;
pub mod pending;
pub mod request;
