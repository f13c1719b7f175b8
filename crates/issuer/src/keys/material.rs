//! Key material: generating a key pair, reading a stored private key, and the public JWK with
//! its RFC 7638 thumbprint (the `kid`).

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

use crate::store::{Kid, SigningAlgorithm};

/// The public half of a key, in JWK terms: only the members that describe the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicJwk {
    /// `kty: EC`, `crv: P-256`.
    P256 { x: String, y: String },
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519 { x: String },
}

impl PublicJwk {
    /// From an uncompressed P-256 point (`04 || x || y`).
    fn p256(point: &[u8]) -> Option<Self> {
        match point {
            [0x04, rest @ ..] if rest.len() == 64 => Some(PublicJwk::P256 {
                x: URL_SAFE_NO_PAD.encode(&rest[..32]),
                y: URL_SAFE_NO_PAD.encode(&rest[32..]),
            }),
            _ => None,
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order,
    /// without whitespace, base64url. Stable for a key, so it makes a good `kid`.
    pub(crate) fn thumbprint(&self) -> Kid {
        // The members are base64url strings and fixed names: no JSON escaping is needed.
        let canonical = match self {
            PublicJwk::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Kid::new(URL_SAFE_NO_PAD.encode(digest.as_ref()))
    }

    /// The JWK as published: the public members, `kid`, `alg` and `use: sig`, nothing else.
    pub(crate) fn to_json(&self, kid: &Kid, algorithm: SigningAlgorithm) -> Value {
        match self {
            PublicJwk::P256 { x, y } => json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "kid": kid.as_str(), "alg": algorithm.as_str(), "use": "sig",
            }),
            PublicJwk::Ed25519 { x } => json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid.as_str(), "alg": algorithm.as_str(), "use": "sig",
            }),
        }
    }

    /// Reads the public members of a stored JWK, ignoring any other member.
    pub(crate) fn from_json(value: &Value) -> Option<Self> {
        let member = |name: &str| value.get(name).and_then(Value::as_str);
        match (member("kty")?, member("crv")?) {
            ("EC", "P-256") => Some(PublicJwk::P256 {
                x: member("x")?.to_owned(),
                y: member("y")?.to_owned(),
            }),
            ("OKP", "Ed25519") => Some(PublicJwk::Ed25519 {
                x: member("x")?.to_owned(),
            }),
            _ => None,
        }
    }

    /// Whether the key type fits `algorithm`.
    pub(crate) fn fits(&self, algorithm: SigningAlgorithm) -> bool {
        matches!(
            (self, algorithm),
            (PublicJwk::P256 { .. }, SigningAlgorithm::Es256)
                | (PublicJwk::Ed25519 { .. }, SigningAlgorithm::EdDsa)
        )
    }
}

/// A new key pair: its PKCS#8 DER private key and its public JWK.
pub(crate) struct Generated {
    pub(crate) pkcs8: Vec<u8>,
    pub(crate) public: PublicJwk,
}

/// Generates a key pair for `algorithm` from the system's random source.
pub(crate) fn generate(algorithm: SigningAlgorithm) -> Result<Generated, &'static str> {
    let pkcs8 = match algorithm {
        SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(|_| "P-256 key generation failed")?,
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(|_| "Ed25519 key generation failed")?,
    };
    let pkcs8 = pkcs8.as_ref().to_vec();
    let public = public_of(algorithm, &pkcs8)?;
    Ok(Generated { pkcs8, public })
}

/// Parses a PKCS#8 private key for `algorithm` and derives its public JWK, which proves the
/// key is well formed before anything signs with it.
pub(crate) fn public_of(
    algorithm: SigningAlgorithm,
    pkcs8: &[u8],
) -> Result<PublicJwk, &'static str> {
    match algorithm {
        SigningAlgorithm::Es256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(|_| "not a PKCS#8 P-256 private key")?;
            PublicJwk::p256(pair.public_key().as_ref()).ok_or("P-256 public key of unexpected form")
        }
        SigningAlgorithm::EdDsa => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
                .map_err(|_| "not a PKCS#8 Ed25519 private key")?;
            Ok(PublicJwk::Ed25519 {
                x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            })
        }
    }
}

/// The jsonwebtoken signing key for a PKCS#8 private key already checked by [`public_of`].
pub(crate) fn encoding_key(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> EncodingKey {
    match algorithm {
        SigningAlgorithm::Es256 => EncodingKey::from_ec_der(pkcs8),
        SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(pkcs8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_for_an_ec_key() {
        // RFC 7638 gives an RSA example only; this P-256 key and thumbprint are from RFC 9449
        // (DPoP) §4.1 / §6.1.
        let jwk = PublicJwk::P256 {
            x: "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs".into(),
            y: "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA".into(),
        };
        assert_eq!(
            jwk.thumbprint().as_str(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn generated_keys_read_back_to_the_same_public_key() {
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let generated = generate(algorithm).unwrap();
            assert_eq!(
                public_of(algorithm, &generated.pkcs8).unwrap(),
                generated.public
            );
            assert!(generated.public.fits(algorithm));
        }
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused() {
        let ed = generate(SigningAlgorithm::EdDsa).unwrap();
        assert!(public_of(SigningAlgorithm::Es256, &ed.pkcs8).is_err());
        assert!(public_of(SigningAlgorithm::EdDsa, b"not a key").is_err());
    }

    #[test]
    fn published_jwk_round_trips_through_from_json() {
        let generated = generate(SigningAlgorithm::Es256).unwrap();
        let kid = generated.public.thumbprint();
        let json = generated.public.to_json(&kid, SigningAlgorithm::Es256);
        assert_eq!(PublicJwk::from_json(&json), Some(generated.public));
        assert_eq!(json["use"], "sig");
        assert_eq!(json["kid"], kid.as_str());
    }
}
