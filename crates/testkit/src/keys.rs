//! Signing keys for tests and the tokens they make.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

/// A signing key with its public half in JWK and PEM form.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` put in tokens and in the JWK.
    pub kid: String,
    /// The algorithm tokens are signed with.
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as a JWK (with `kid`, `alg` and `use: sig`).
    pub jwk: Jwk,
    /// The public key in PEM (SPKI), or the secret for HMAC keys.
    pub public_pem: String,
}

macro_rules! key_file {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/", $name))
    };
}

impl TestKey {
    fn from_pem(kid: &str, alg: Algorithm, private: &str, public: &str) -> Self {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private.as_bytes()),
        }
        .expect("test key parses");
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk from key");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            public_pem: public.to_owned(),
        }
    }

    /// RSA key number `n` (1 to 3) signing RS256.
    pub fn rsa(n: u8, kid: &str) -> Self {
        let (private, public) = match n {
            1 => (key_file!("rsa1.pem"), key_file!("rsa1.pub.pem")),
            2 => (key_file!("rsa2.pem"), key_file!("rsa2.pub.pem")),
            _ => (key_file!("rsa3.pem"), key_file!("rsa3.pub.pem")),
        };
        Self::from_pem(kid, Algorithm::RS256, private, public)
    }

    /// The P-256 key signing ES256.
    pub fn ec(kid: &str) -> Self {
        Self::from_pem(
            kid,
            Algorithm::ES256,
            key_file!("ec1.pem"),
            key_file!("ec1.pub.pem"),
        )
    }

    /// The Ed25519 key signing EdDSA.
    pub fn ed(kid: &str) -> Self {
        Self::from_pem(
            kid,
            Algorithm::EdDSA,
            key_file!("ed1.pem"),
            key_file!("ed1.pub.pem"),
        )
    }

    /// An HMAC secret signing HS256.
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        let encoding = EncodingKey::from_secret(secret);
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::HS256).expect("jwk from secret");
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::HS256,
            encoding,
            jwk,
            public_pem: String::from_utf8_lossy(secret).into_owned(),
        }
    }

    /// Signs `claims` with a header carrying this key's `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` with the given header.
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        encode(header, claims, &self.encoding).expect("signing")
    }

    /// Signs a payload given as raw JSON text (which may hold what a `Value` cannot, such as
    /// a member named twice), with this key's `alg` and `kid`.
    pub fn sign_raw(&self, payload: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let header = b64(serde_json::to_string(&header).expect("header").as_bytes());
        let message = format!("{header}.{}", b64(payload.as_bytes()));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg)
            .expect("signing");
        format!("{message}.{signature}")
    }
}

/// A JWK Set document for `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    serde_json::to_value(JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .expect("jwks json")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for `subject`: issuer, audience, scopes, a 10-minute lifetime.
pub fn claims(issuer: &str, audience: &str, subject: &str, scope: &str) -> Value {
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": "test-client",
        "scope": scope,
        "iat": now(),
        "exp": now() + 600,
    })
}

/// Joins base64url segments into a compact token, for hand-made malformed tokens.
pub fn b64(value: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
}
