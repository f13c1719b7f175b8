//! Rate limits: how often a subject, a client, an address — or everyone together — may call a
//! tool, read a resource or get a prompt (`[[rate_limit]]`), and how often one address may
//! knock without valid credentials (`http.unauthenticated_per_address`).
//!
//! MCP (2026-07-28, tools) requires servers to rate-limit tool invocations, so one rule is on
//! unless configured otherwise: 100 tool calls per second per subject. A limit `N/unit` lets
//! `N` through at once and then one every `unit / N` (a token bucket, GCRA, from `governor`).
//! A refused call is answered HTTP 429 with `Retry-After` and a JSON-RPC error, recorded in
//! the audit log and counted in `/metrics`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use mcpgate_guard::Principal;
use mcpgate_guard::policy::Kind;
use serde::{Deserialize, Serialize};

/// `N/second`, `N/minute` or `N/hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many at once, and per `per`.
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Reads `100/second`, `60/minute`, `1000/hour` (also `s`, `min`, `m`, `h`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("`{text}` is not a rate: write N/second, N/minute or N/hour");
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count)
            .ok_or_else(|| format!("`{text}`: the count must be at least 1"))?;
        let per = match unit.trim() {
            "second" | "s" | "sec" => Duration::from_secs(1),
            "minute" | "min" | "m" => Duration::from_secs(60),
            "hour" | "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }

    fn quota(self) -> Quota {
        let period = self.per / self.count.get();
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a positive period")
            .allow_burst(self.count)
    }
}

/// What a rule counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Each subject (issuer + subject) has its own allowance.
    Subject,
    /// Each OAuth client.
    Client,
    /// Each target (tool name, URI, prompt).
    Target,
    /// Each client address.
    Address,
}

/// One `[[rate_limit]]` rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// A name for the audit log and `/metrics` (default `rate_limit[N]`).
    pub name: Option<String>,
    /// Which kinds of call it counts (default: tools).
    pub kind: Vec<Kind>,
    /// Which targets it counts (globs; default: all).
    #[serde(rename = "match")]
    pub matches: Vec<String>,
    /// What it counts separately (default: per subject). Empty: everyone together.
    pub per: Vec<Per>,
    /// `N/second`, `N/minute` or `N/hour`.
    pub rate: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            name: None,
            kind: vec![Kind::Tool],
            matches: Vec::new(),
            per: vec![Per::Subject],
            rate: String::new(),
        }
    }
}

/// The rule that is on unless `rate_limit` is configured: 100 tool calls per second per
/// subject.
pub fn default_rules() -> Vec<RateLimitConfig> {
    vec![RateLimitConfig {
        name: Some("tool calls per subject".into()),
        rate: "100/second".into(),
        ..RateLimitConfig::default()
    }]
}

/// A bucket's key: a digest of what the rule counts separately (subject, client, target,
/// address), so that a long target name costs no more memory than a short one.
type Key = [u8; 16];
type Keyed = RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock>;

/// Most buckets one rule keeps; when full, those that are full again are forgotten, and if
/// that is not enough, calls that would need a new bucket are refused until some are.
const MAX_BUCKETS: usize = 100_000;

struct Rule {
    /// When buckets that are full again were last forgotten (seconds since `epoch`).
    last_sweep: std::sync::atomic::AtomicU64,
    name: String,
    kinds: Vec<Kind>,
    targets: Option<GlobSet>,
    per: Vec<Per>,
    limiter: Keyed,
}

/// A fixed instant for the sweep clock.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A refusal: which rule, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The rule's name.
    pub rule: String,
    /// When a retry may succeed.
    pub retry_after: Duration,
}

/// The compiled rules.
pub struct RateLimits {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// A problem with `rate_limit`, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitError {
    /// `rate_limit[N].field`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl RateLimits {
    /// Compiles the rules; every problem is reported with its key.
    pub fn compile(configs: &[RateLimitConfig]) -> Result<RateLimits, Vec<RateLimitError>> {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let key = |field: &str| format!("rate_limit[{i}].{field}");
            let rate = match Rate::parse(&c.rate) {
                Ok(r) => Some(r),
                Err(problem) => {
                    errors.push(RateLimitError {
                        key: key("rate"),
                        problem,
                    });
                    None
                }
            };
            let targets = if c.matches.is_empty() {
                None
            } else {
                let mut b = GlobSetBuilder::new();
                for m in &c.matches {
                    match Glob::new(m) {
                        Ok(g) => {
                            b.add(g);
                        }
                        Err(e) => errors.push(RateLimitError {
                            key: key("match"),
                            problem: format!("`{m}` is not a valid pattern: {e}"),
                        }),
                    }
                }
                b.build().ok()
            };
            if let Some(rate) = rate {
                rules.push(Rule {
                    last_sweep: std::sync::atomic::AtomicU64::new(0),
                    name: c.name.clone().unwrap_or_else(|| format!("rate_limit[{i}]")),
                    kinds: if c.kind.is_empty() {
                        vec![Kind::Tool]
                    } else {
                        c.kind.clone()
                    },
                    targets,
                    per: c.per.clone(),
                    limiter: RateLimiter::keyed(rate.quota()),
                });
            }
        }
        if errors.is_empty() {
            Ok(RateLimits { rules })
        } else {
            Err(errors)
        }
    }

    /// Whether there are rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts one call of `target` by `who` (from `address`) against every rule that selects
    /// it; the first rule whose allowance is spent refuses it. Calls refused by the policy are
    /// never counted: this runs after the decision.
    pub fn check(
        &self,
        who: &Principal,
        address: Option<IpAddr>,
        kind: Kind,
        target: &str,
    ) -> Result<(), Limited> {
        for rule in &self.rules {
            if !rule.kinds.contains(&kind)
                || rule.targets.as_ref().is_some_and(|t| !t.is_match(target))
            {
                continue;
            }
            let mut key = String::new();
            for p in &rule.per {
                match p {
                    Per::Subject => {
                        key.push_str(who.issuer.as_deref().unwrap_or_default());
                        key.push('\u{0}');
                        key.push_str(who.subject.as_str());
                    }
                    Per::Client => key.push_str(who.client_id.as_ref().map_or("", |c| c.as_str())),
                    Per::Target => key.push_str(target),
                    Per::Address => {
                        if let Some(a) = address {
                            key.push_str(&a.to_string());
                        }
                    }
                }
                key.push('\u{1}');
            }
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
            let mut key: Key = [0; 16];
            key.copy_from_slice(&digest.as_ref()[..16]);
            if rule.limiter.len() >= MAX_BUCKETS {
                // A sweep at most once a second: it walks every bucket.
                let now = epoch().elapsed().as_secs();
                let last = rule.last_sweep.load(std::sync::atomic::Ordering::Relaxed);
                if now > last
                    && rule
                        .last_sweep
                        .compare_exchange(
                            last,
                            now,
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    rule.limiter.retain_recent();
                }
                if rule.limiter.len() >= MAX_BUCKETS {
                    tracing::warn!(target: "mcpgate::policy", rule = rule.name, "rate limit has as many buckets as it keeps; refusing new callers");
                    crate::metrics::rate_limited(&rule.name);
                    return Err(Limited {
                        rule: rule.name.clone(),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
            if let Err(not_until) = rule.limiter.check_key(&key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                crate::metrics::rate_limited(&rule.name);
                return Err(Limited {
                    rule: rule.name.clone(),
                    retry_after: wait,
                });
            }
        }
        Ok(())
    }

    /// Forgets allowances that are full again (keeps memory bounded by recent callers).
    pub fn forget_idle(&self) {
        for r in &self.rules {
            r.limiter.retain_recent();
            r.limiter.shrink_to_fit();
        }
    }
}

/// How often one address may be refused for lack of valid credentials before it is answered
/// 429 until its allowance refills: a client without a token gets its 401 challenges, a
/// scanner trying tokens is slowed down. Only refusals count.
pub struct Unauthenticated {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    /// Addresses that are out of allowance, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for Unauthenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unauthenticated").finish_non_exhaustive()
    }
}

/// Most addresses remembered as blocked at once.
const MAX_BLOCKED: usize = 100_000;

impl Unauthenticated {
    /// `rate` refusals per address.
    pub fn new(rate: Rate) -> Self {
        Unauthenticated {
            limiter: RateLimiter::keyed(rate.quota()),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// When `address` may try again, if it is blocked now.
    pub fn blocked(&self, address: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().expect("blocked lock");
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until <= now {
            blocked.remove(&address);
            return None;
        }
        Some(until - now)
    }

    /// Counts a refusal for `address`.
    pub fn refused(&self, address: IpAddr) {
        if let Err(not_until) = self.limiter.check_key(&address) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked.lock().expect("blocked lock");
            if blocked.len() >= MAX_BLOCKED {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
            }
            if blocked.len() < MAX_BLOCKED {
                blocked.insert(address, Instant::now() + wait);
            }
        }
    }

    /// Forgets addresses whose allowance is full again.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        self.blocked
            .lock()
            .expect("blocked lock")
            .retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_guard::{ClientId, Subject};

    fn who(subject: &str, client: &str) -> Principal {
        Principal::builder(Subject::new(subject))
            .client_id(ClientId::new(client))
            .build()
    }

    fn rules(text: &str) -> RateLimits {
        #[derive(Deserialize)]
        struct F {
            rate_limit: Vec<RateLimitConfig>,
        }
        let f: F = toml::from_str(text).unwrap();
        RateLimits::compile(&f.rate_limit).unwrap()
    }

    #[test]
    fn rates_are_read_with_their_unit() {
        assert_eq!(
            Rate::parse("100/second").unwrap().per,
            Duration::from_secs(1)
        );
        assert_eq!(Rate::parse(" 5 / min ").unwrap().count.get(), 5);
        assert!(Rate::parse("0/second").is_err());
        assert!(Rate::parse("ten/second").is_err());
        assert!(Rate::parse("10/fortnight").is_err());
        assert!(Rate::parse("10").is_err());
    }

    #[test]
    fn each_subject_has_its_own_allowance() {
        let r = rules("[[rate_limit]]\nrate = \"2/minute\"");
        let alice = who("alice", "c");
        let bob = who("bob", "c");
        assert!(r.check(&alice, None, Kind::Tool, "t").is_ok());
        assert!(r.check(&alice, None, Kind::Tool, "t").is_ok());
        let refused = r.check(&alice, None, Kind::Tool, "t").unwrap_err();
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(30)
        );
        assert!(r.check(&bob, None, Kind::Tool, "t").is_ok());
        // Prompts are not counted by a tool rule.
        assert!(r.check(&alice, None, Kind::Prompt, "p").is_ok());
    }

    #[test]
    fn rules_select_by_target_and_count_per_client_or_target() {
        let r = rules(
            "[[rate_limit]]\nname = \"deletes\"\nmatch = [\"delete_*\"]\nper = [\"client\", \"target\"]\nrate = \"1/hour\"",
        );
        let a = who("alice", "app");
        let b = who("bob", "app");
        assert!(r.check(&a, None, Kind::Tool, "delete_x").is_ok());
        assert_eq!(
            r.check(&b, None, Kind::Tool, "delete_x").unwrap_err().rule,
            "deletes"
        );
        assert!(r.check(&b, None, Kind::Tool, "delete_y").is_ok());
        assert!(r.check(&b, None, Kind::Tool, "get_x").is_ok());
    }

    #[test]
    fn bad_rules_name_their_key() {
        #[derive(Deserialize)]
        struct F {
            rate_limit: Vec<RateLimitConfig>,
        }
        let f: F = toml::from_str(
            "[[rate_limit]]\nrate = \"often\"\n[[rate_limit]]\nrate = \"1/s\"\nmatch = [\"[\"]",
        )
        .unwrap();
        let e = RateLimits::compile(&f.rate_limit).unwrap_err();
        assert_eq!(e[0].key, "rate_limit[0].rate");
        assert_eq!(e[1].key, "rate_limit[1].match");
    }

    #[test]
    fn an_address_refused_too_often_is_blocked_for_a_while() {
        let u = Unauthenticated::new(Rate::parse("2/minute").unwrap());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        u.refused(ip);
        u.refused(ip);
        assert!(u.blocked(ip).is_none());
        u.refused(ip);
        assert!(u.blocked(ip).is_some());
        assert!(u.blocked("192.0.2.2".parse().unwrap()).is_none());
    }
}
