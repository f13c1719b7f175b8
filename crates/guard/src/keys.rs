//! Verification keys and the algorithms each one may be used with.
//!
//! The algorithm allow-list comes from the key, never from the token: an RSA key verifies
//! `RS*`/`PS*` signatures only, an HMAC secret `HS*` only, so a token that names `HS256` cannot
//! get an RSA public key used as its HMAC secret (algorithm confusion), and `alg: none` has no
//! key at all.

use std::str::FromStr;

use base64::Engine as _;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// A key that can verify signatures, with the algorithms it is allowed to verify.
pub struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) validation: Validation,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM holds no RSA, EC or Ed25519 public key that can be read.
    #[error("not a PEM-encoded RSA, EC (P-256/P-384) or Ed25519 public key")]
    UnreadablePem,
    /// An HMAC secret shorter than the hash it is used with is guessable.
    #[error("HMAC secret is {0} bytes; at least 32 are required")]
    ShortSecret(usize),
    /// The allow-list leaves no algorithm this key can verify.
    #[error("none of the allowed algorithms {allowed:?} fits a {family} key")]
    NoAlgorithm {
        /// What kind of key it is.
        family: &'static str,
        /// The configured allow-list.
        allowed: Vec<Algorithm>,
    },
    /// A JWK that cannot be used.
    #[error("JWK {kid:?} cannot be used: {reason}")]
    UnusableJwk {
        /// Its `kid`.
        kid: Option<String>,
        /// Why.
        reason: String,
    },
}

/// Every algorithm this crate verifies, the default allow-list.
pub const ALL_ALGORITHMS: [Algorithm; 12] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
];

impl VerificationKey {
    fn new(
        kid: Option<String>,
        key: DecodingKey,
        candidates: &[Algorithm],
        allowed: &[Algorithm],
    ) -> Result<Self, KeyError> {
        let algorithms: Vec<Algorithm> = candidates
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect();
        if algorithms.is_empty() {
            return Err(KeyError::NoAlgorithm {
                family: family_name(candidates),
                allowed: allowed.to_vec(),
            });
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.clone();
        // Claims are checked by `ClaimRules`, which knows our leeway and audience rules.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Ok(VerificationKey {
            kid,
            key,
            algorithms,
            validation,
        })
    }

    /// A static public key in PEM form (SPKI or PKCS#1 RSA; SPKI EC P-256/P-384; SPKI
    /// Ed25519).
    pub fn from_pem(pem: &[u8], allowed: &[Algorithm]) -> Result<Self, KeyError> {
        let (key, candidates): (DecodingKey, &[Algorithm]) =
            if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (k, RSA)
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                // The curve decides between ES256 and ES384; a signature made for the other curve
                // simply fails to verify.
                (k, EC)
            } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (k, ED)
            } else {
                return Err(KeyError::UnreadablePem);
            };
        Self::new(None, key, candidates, allowed)
    }

    /// A shared HMAC secret (at least 32 bytes).
    pub fn from_hmac_secret(secret: &[u8], allowed: &[Algorithm]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Self::new(None, DecodingKey::from_secret(secret), HMAC, allowed)
    }

    /// A key from a JWK Set. Symmetric (`oct`) keys are refused: a JWKS is public.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Self, KeyError> {
        let kid = jwk.common.key_id.clone();
        let unusable = |reason: &str| KeyError::UnusableJwk {
            kid: kid.clone(),
            reason: reason.to_owned(),
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
        ) {
            return Err(unusable("`use` is not `sig`"));
        }
        // RFC 7517 §4.3: a key whose listed operations leave out `verify` is not for this.
        if let Some(ops) = &jwk.common.key_operations
            && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
        {
            return Err(unusable("`key_ops` does not include `verify`"));
        }
        let by_type: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                // Signatures by keys under 2048 bits are refused at verification anyway;
                // skipping them here keeps them out of the count of keys loaded.
                let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(rsa.n.trim_end_matches('='))
                    .map(|n| {
                        let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                        n.first()
                            .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize)
                    })
                    .unwrap_or(0);
                if bits < 2048 {
                    return Err(unusable("RSA modulus under 2048 bits"));
                }
                RSA
            }
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => &[Algorithm::ES256],
                EllipticCurve::P384 => &[Algorithm::ES384],
                _ => return Err(unusable("unsupported curve")),
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => ED,
            AlgorithmParameters::OctetKey(_) => {
                return Err(unusable("symmetric keys are not accepted from a JWKS"));
            }
            _ => return Err(unusable("unsupported key type")),
        };
        let candidates: Vec<Algorithm> = match &jwk.common.key_algorithm {
            Some(alg) => {
                let alg = Algorithm::from_str(&alg.to_string())
                    .map_err(|_| unusable("unsupported `alg`"))?;
                if !by_type.contains(&alg) {
                    return Err(unusable("`alg` does not fit the key type"));
                }
                vec![alg]
            }
            None => by_type.to_vec(),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| unusable(&e.to_string()))?;
        Self::new(kid, key, &candidates, allowed)
    }
}

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

fn family_name(candidates: &[Algorithm]) -> &'static str {
    match candidates.first() {
        Some(a) if RSA.contains(a) => "RSA",
        Some(a) if EC.contains(a) => "EC",
        Some(a) if ED.contains(a) => "Ed25519",
        _ => "HMAC",
    }
}

/// The usable keys of a JWK Set, and what was skipped.
pub(crate) fn keys_from_jwks(
    set: &JwkSet,
    allowed: &[Algorithm],
) -> (Vec<VerificationKey>, Vec<KeyError>) {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for jwk in &set.keys {
        match VerificationKey::from_jwk(jwk, allowed) {
            Ok(k) => keys.push(k),
            Err(e) => skipped.push(e),
        }
    }
    (keys, skipped)
}
