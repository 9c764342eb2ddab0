//! Authentication: HTTP basic with the customer's password, and bearer API tokens.
//!
//! Password checks are argon2id and deliberately slow, so they are guarded three ways:
//! failed logins are rate-limited per username and per peer, and a user or peer over its
//! limit is refused *before* any hashing (checked again after waiting for a hashing slot, so
//! a queued burst drains without hashing); at most one hash per CPU runs at a time (on the
//! blocking pool, never on the async workers); and a successful check is remembered for a
//! short while under a keyed hash of the credentials, so a client sending basic auth on
//! every request pays for one hash, not one per request. Only failures count: many
//! customers behind one office address logging in correctly are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use berth_model::{validate, Credential};
use governor::{DefaultKeyedRateLimiter, Quota};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use berth_store::accounts;

use crate::{Caller, Error, Result, Service};

/// Prefix of every API token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "berth_";

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Failed logins allowed in a burst per username, then one per `refill`.
    pub user_burst: u32,
    /// Failed logins allowed in a burst per peer address, then one per `refill`.
    pub peer_burst: u32,
    pub refill: Duration,
    /// How long a verified password is remembered.
    pub verified_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            user_burst: 10,
            peer_burst: 30,
            refill: Duration::from_secs(2),
            verified_ttl: Duration::from_secs(300),
        }
    }
}

pub struct Authenticator {
    per_user: FailureLimit<String>,
    per_peer: FailureLimit<IpAddr>,
    hashing: Semaphore,
    /// Random per process: cache keys are useless outside it.
    cache_key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], (i64, String, Instant)>>,
    /// One check in flight per credentials: a client opening fifty connections at once
    /// with the same password waits for one hash instead of queueing fifty.
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    hashes_run: std::sync::atomic::AtomicU64,
    ttl: Duration,
    /// Verified against when the username is unknown, so both cases cost the same.
    dummy_hash: String,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Authenticator {
        let quota = |burst: u32| {
            Quota::with_period(config.refill)
                .expect("non-zero refill period")
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("non-zero burst"))
        };
        let mut cache_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut cache_key);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            per_user: FailureLimit::new(quota(config.user_burst)),
            per_peer: FailureLimit::new(quota(config.peer_burst)),
            hashing: Semaphore::new(cpus),
            cache_key,
            verified: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            hashes_run: Default::default(),
            ttl: config.verified_ttl,
            dummy_hash: hash_password("not a real password").expect("hash dummy password"),
        }
    }

    fn cache_slot(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn remembered(&self, slot: &[u8; 32]) -> Option<i64> {
        let mut cache = self.verified.lock().expect("auth cache poisoned");
        match cache.get(slot) {
            Some((id, _, at)) if at.elapsed() < self.ttl => Some(*id),
            Some(_) => {
                cache.remove(slot);
                None
            }
            None => None,
        }
    }

    fn remember(&self, slot: [u8; 32], customer_id: i64, username: &str) {
        let mut cache = self.verified.lock().expect("auth cache poisoned");
        if cache.len() > 100_000 {
            let ttl = self.ttl;
            cache.retain(|_, (_, _, at)| at.elapsed() < ttl);
        }
        cache.insert(slot, (customer_id, username.to_owned(), Instant::now()));
    }

    /// The lock of the one check of these credentials: the same lock for every caller
    /// presenting them until the last of them is done (also when one is cancelled).
    fn check_lock(&self, slot: [u8; 32]) -> CheckLock<'_> {
        let mut in_flight = self.in_flight.lock().expect("auth in-flight map poisoned");
        let lock = in_flight.entry(slot).or_default().clone();
        CheckLock { auth: self, slot, lock }
    }

    /// Forgets every remembered login of a user (after a password change).
    pub(crate) fn forget_user(&self, username: &str) {
        self.verified.lock().expect("auth cache poisoned").retain(|_, (_, u, _)| u != username);
    }

    /// Forgets every verified password (revocations may have been missed).
    pub(crate) fn forget_everyone(&self) {
        self.verified.lock().expect("auth cache poisoned").clear();
    }

    /// Refuses, without hashing, a user or peer that failed too often recently.
    fn admit(&self, username: &str, peer: IpAddr) -> Result<()> {
        self.per_peer.check(&peer)?;
        self.per_user.check(&username.to_owned())
    }

    /// Counts one failed login against the user and the peer.
    fn failed(&self, username: &str, peer: IpAddr) {
        self.per_peer.record_failure(peer);
        self.per_user.record_failure(username.to_owned());
    }

    /// Runs one argon2 verification on the blocking pool; the caller holds a hashing permit.
    async fn verify(&self, password: String, hash: String) -> Result<bool> {
        self.hashes_run.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.map_err(Error::internal)
    }
}

struct CheckLock<'a> {
    auth: &'a Authenticator,
    slot: [u8; 32],
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for CheckLock<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.auth.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the map's reference and ours left: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            in_flight.remove(&self.slot);
        }
    }
}

/// Failed logins per key: governor's GCRA counts failures, and a key whose failure was
/// refused by it is blocked until governor would allow the next one. Checking is free; only
/// failures consume quota (governor has no "peek", hence the blocked map).
struct FailureLimit<K: std::hash::Hash + Eq + Clone> {
    failures: DefaultKeyedRateLimiter<K>,
    blocked: Mutex<HashMap<K, Instant>>,
    /// Keys held before the next sweep; see [`FailureLimit::sweep`].
    sweep_at: AtomicUsize,
    /// The least `sweep_at` ever is.
    sweep_floor: usize,
}

/// Keys (usernames, peers) remembered before the first sweep of forgotten ones.
const SWEEP_AT: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> FailureLimit<K> {
    fn new(quota: Quota) -> Self {
        FailureLimit::sweeping_at(quota, SWEEP_AT)
    }

    fn sweeping_at(quota: Quota, sweep_floor: usize) -> Self {
        FailureLimit {
            failures: DefaultKeyedRateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
            sweep_at: AtomicUsize::new(sweep_floor),
            sweep_floor,
        }
    }

    /// Drops the keys whose failures have all refilled and the blocks that ended. Clients
    /// choose the usernames they fail with: without this, every invented one stays in memory.
    /// The next sweep waits until the keys have doubled again, so one costs O(1) per failure
    /// even while an attack keeps every key recent.
    fn sweep(&self) {
        if self.failures.len() <= self.sweep_at.load(Ordering::Relaxed) {
            return;
        }
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = self.blocked.lock().expect("login limiter poisoned");
        blocked.retain(|_, until| *until > now);
        let held = self.failures.len().max(blocked.len());
        self.sweep_at.store((2 * held).max(self.sweep_floor), Ordering::Relaxed);
    }

    fn check(&self, key: &K) -> Result<()> {
        let mut blocked = self.blocked.lock().expect("login limiter poisoned");
        match blocked.get(key) {
            Some(until) if *until > Instant::now() => {
                let wait = until.saturating_duration_since(Instant::now());
                Err(Error::RateLimited { retry_after_secs: wait.as_secs().max(1) })
            }
            Some(_) => {
                blocked.remove(key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record_failure(&self, key: K) {
        self.sweep();
        if let Err(not_until) = self.failures.check_key(&key) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            self.blocked.lock().expect("login limiter poisoned").insert(key, Instant::now() + wait);
        }
    }
}

/// An argon2id PHC string for a new password.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A fresh token: what the customer sees once, and the hash the store keeps.
pub(crate) struct MintedToken {
    pub secret: String,
    pub secret_hash: String,
}

pub(crate) fn mint_token_secret() -> MintedToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let secret_hash = token_hash(&secret);
    MintedToken { secret, secret_hash }
}

/// Tokens carry 256 random bits, so a fast hash is enough; a slow one would only cost CPU.
fn token_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `berth_<id>_<secret>`: the id finds the row, the secret proves possession.
pub(crate) fn format_token(id: i64, secret: &str) -> String {
    format!("{TOKEN_PREFIX}{id}_{secret}")
}

fn parse_token(token: &str) -> Option<(i64, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    Some((id.parse().ok()?, secret))
}

impl Service {
    /// Checks a username and password. Wrong, unknown and inactive accounts all answer
    /// `Unauthenticated`; too many failures answer `RateLimited` without hashing.
    pub async fn authenticate_password(&self, username: &str, password: &str, peer: IpAddr) -> Result<Caller> {
        let auth = &self.auth;
        let slot = auth.cache_slot(username, password);
        if let Some(customer_id) = auth.remembered(&slot) {
            return Ok(Caller { customer_id });
        }
        let check = auth.check_lock(slot);
        let _one_at_a_time = check.lock.lock().await;
        // Whoever held the lock before may just have verified these credentials.
        match auth.remembered(&slot) {
            Some(customer_id) => Ok(Caller { customer_id }),
            None => self.check_password(username, password, peer, slot).await,
        }
    }

    /// Argon2 verifications run since start (each is ~tens of ms of CPU).
    pub fn password_hashes_run(&self) -> u64 {
        self.auth.hashes_run.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The argon2 check behind [`Service::authenticate_password`], rate limits included.
    async fn check_password(&self, username: &str, password: &str, peer: IpAddr, slot: [u8; 32]) -> Result<Caller> {
        let auth = &self.auth;
        auth.admit(username, peer)?;
        let creds = match validate::may_be_stored(username) {
            true => accounts::credentials(&mut *self.store.read().await?, username).await?,
            false => None,
        };
        let (hash, account) = match &creds {
            Some(c) => (c.password_hash.clone(), Some(c)),
            None => (auth.dummy_hash.clone(), None),
        };
        let ok = {
            let _permit = auth.hashing.acquire().await.map_err(Error::internal)?;
            // Failures recorded while this request waited for a slot count too.
            auth.admit(username, peer)?;
            auth.verify(password.to_owned(), hash).await?
        };
        match account {
            Some(c) if ok && c.active => {
                auth.remember(slot, c.customer_id, username);
                Ok(Caller { customer_id: c.customer_id })
            }
            _ => {
                auth.failed(username, peer);
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Checks a bearer API token in constant time against the stored hash.
    pub async fn authenticate_token(&self, token: &str, peer: IpAddr) -> Result<Caller> {
        self.auth.per_peer.check(&peer)?;
        let Some((id, secret)) = parse_token(token) else {
            self.auth.per_peer.record_failure(peer);
            return Err(Error::Unauthenticated);
        };
        let mut conn = self.store.read().await?;
        let stored = accounts::token_secret(&mut conn, id).await?;
        let presented = token_hash(secret);
        let matches = match &stored {
            Some((_, hash)) => bool::from(presented.as_bytes().ct_eq(hash.as_bytes())),
            None => false,
        };
        match stored {
            Some((customer_id, _)) if matches => {
                let active = accounts::customer(&mut conn, customer_id).await?.is_some_and(|c| c.active);
                if !active {
                    return Err(Error::Unauthenticated);
                }
                accounts::touch_token(&mut conn, id).await?;
                Ok(Caller { customer_id })
            }
            _ => {
                self.auth.per_peer.record_failure(peer);
                Err(Error::Unauthenticated)
            }
        }
    }

    pub(crate) fn forget_logins(&self, username: &str) {
        self.auth.forget_user(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format_round_trips() {
        let minted = mint_token_secret();
        let token = format_token(42, &minted.secret);
        assert!(token.starts_with("berth_42_"));
        let (id, secret) = parse_token(&token).unwrap();
        assert_eq!(id, 42);
        assert_eq!(token_hash(secret), minted.secret_hash);
        assert!(parse_token("berth_x_y").is_none());
        assert!(parse_token("other").is_none());
    }

    #[test]
    fn failure_limits_forget_usernames_whose_failures_refilled() {
        let quota = Quota::with_period(Duration::from_millis(1)).unwrap().allow_burst(NonZeroU32::new(1).unwrap());
        let limit = FailureLimit::<String>::sweeping_at(quota, 99);
        for i in 0..100 {
            limit.record_failure(format!("invented{i}"));
        }
        assert_eq!(limit.failures.len(), 100, "no sweep until past the floor");
        std::thread::sleep(Duration::from_millis(20));
        limit.record_failure("one more".to_owned());
        assert_eq!(limit.failures.len(), 1, "keys whose failures refilled are swept");
        assert_eq!(limit.sweep_at.load(Ordering::Relaxed), 99, "the next sweep waits for the floor again");
    }

    #[test]
    fn argon2id_hashes_verify() {
        let hash = hash_password("deimos").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("deimos", &hash));
        assert!(!verify_password("deimos17", &hash));
    }
}

/// Credentials as a client presented them (header, WebSocket `connection_init`, ...).
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Presented::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

impl Presented {
    /// Parses an `Authorization` value: `Basic <base64 user:password>` (split on the first
    /// `:`, so passwords may contain colons) or `Bearer <token>`; schemes match
    /// case-insensitively. `None` for anything malformed.
    pub fn from_authorization(value: &str) -> Option<Presented> {
        let mut parts = value.split_whitespace();
        let (scheme, credentials) = (parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (username, password) = text.split_once(':')?;
            Some(Presented::Basic { username: username.to_owned(), password: password.to_owned() })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Presented::Bearer(credentials.to_owned()))
        } else {
            None
        }
    }
}

impl Presented {
    /// The credential a session opened with these would be revoked by; `None` for a bearer
    /// token that is not one of ours (it cannot authenticate anyway).
    pub fn credential(&self) -> Option<Credential> {
        match self {
            Presented::Basic { username, .. } => Some(Credential::Password { username: username.clone() }),
            Presented::Bearer(token) => parse_token(token).map(|(id, _)| Credential::Token { id }),
        }
    }
}

impl Service {
    pub async fn authenticate(&self, presented: &Presented, peer: IpAddr) -> Result<Caller> {
        match presented {
            Presented::Basic { username, password } => self.authenticate_password(username, password, peer).await,
            Presented::Bearer(token) => self.authenticate_token(token, peer).await,
        }
    }
}

#[cfg(test)]
mod presented_tests {
    use super::Presented;

    #[test]
    fn parses_basic_and_bearer() {
        // "kratos:dei:mos"
        assert_eq!(
            Presented::from_authorization("basic a3JhdG9zOmRlaTptb3M="),
            Some(Presented::Basic { username: "kratos".into(), password: "dei:mos".into() })
        );
        assert_eq!(Presented::from_authorization("Bearer abc"), Some(Presented::Bearer("abc".into())));
        assert_eq!(Presented::from_authorization("Basic !!!"), None);
        assert_eq!(Presented::from_authorization("Basic"), None);
        assert_eq!(Presented::from_authorization("Digest x"), None);
    }

    #[test]
    fn credentials_name_what_revokes_them() {
        use berth_model::Credential;
        let basic = Presented::Basic { username: "kratos".into(), password: "x".into() };
        assert_eq!(basic.credential(), Some(Credential::Password { username: "kratos".into() }));
        assert_eq!(Presented::Bearer("berth_42_s3cr_et".into()).credential(), Some(Credential::Token { id: 42 }));
        assert_eq!(Presented::Bearer("not-ours".into()).credential(), None);
    }
}
