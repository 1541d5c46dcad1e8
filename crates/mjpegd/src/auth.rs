//! Authentication: HTTP Basic users with argon2 password hashes, per-camera access, signed URL
//! tokens for `<img>` tags and tools that cannot send headers, signed session cookies for the
//! login form, and a bounded brake on repeated failures. Pure logic: no HTTP types;
//! `http::access` and `http::login` apply it to requests.
//!
//! There is no bypass for any source address: a reverse proxy on localhost would otherwise
//! turn every outside request into a trusted one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use crate::principal::{Principal, Refusal, User};

type HmacSha256 = Hmac<Sha256>;

/// Failed logins from one address before it is refused for [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long an address over the limit waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked for failures at most; past it the oldest entries are dropped, so an
/// attacker with many addresses cannot grow the server's memory.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;
/// Verified credentials remembered, so argon2 (tens of milliseconds by design) runs once per
/// user rather than once per request (the page polls state and snapshots every second).
pub const VERIFIED_CACHE: usize = 256;
/// How long a verified credential is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(600);
/// Longest lifetime of a URL token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest token accepted for parsing; real ones are well under 200 bytes.
pub const MAX_TOKEN_LEN: usize = 512;
/// How long a login through the form lasts (the cookie's `Max-Age`).
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The cookie that carries a login made through the form.
pub const SESSION_COOKIE: &str = "mjpegd_session";

/// The authentication state of a server.
pub struct Auth {
    users: Vec<User>,
    secret: [u8; 32],
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    verified: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
    /// The one thread that runs argon2: each run takes 19 MiB and tens of milliseconds by
    /// design, so running them in parallel on request threads would let a flood of logins
    /// take the machine's memory and CPU.
    worker: OnceLock<SyncSender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Password checks queued at most; past it logins are refused as busy.
pub const MAX_QUEUED_VERIFICATIONS: usize = 32;

/// The password checker is saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        f.debug_struct("Auth")
            .field("users", &names)
            .finish_non_exhaustive()
    }
}

/// Why a password could not be hashed or a stored hash is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The system gave no random bytes for a salt.
    // No `#[source]`: getrandom's error implements `std::error::Error` only with its `std`
    // feature, which nothing here turns on.
    #[error("no randomness for a salt: {0}")]
    NoRandomness(getrandom::Error),
    /// argon2 refused to hash.
    #[error(transparent)]
    Hash(#[from] argon2::password_hash::Error),
    /// The stored string is not a PHC hash.
    #[error("not a password hash ({0}); make one with `mjpegd hash-password`")]
    NotAHash(#[source] argon2::password_hash::Error),
    /// The stored hash is not argon2.
    #[error("unsupported hash algorithm {0:?}; make one with `mjpegd hash-password`")]
    Algorithm(String),
}

// The config parser collects messages as strings; this keeps it a plain `map_err` away.
impl From<AuthError> for String {
    fn from(e: AuthError) -> String {
        e.to_string()
    }
}

/// Hashes a password for the config file (`mjpegd hash-password`).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(AuthError::NoRandomness)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks that a stored hash is a usable argon2 PHC string.
pub fn check_hash(hash: &str) -> Result<(), AuthError> {
    let parsed = PasswordHash::new(hash).map_err(AuthError::NotAHash)?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(AuthError::Algorithm(parsed.algorithm.as_str().to_owned()));
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Auth {
    /// Authentication with these users. `secret` signs URL tokens; `None` draws a random one
    /// (tokens then die with the process).
    pub fn new(users: Vec<User>, secret: Option<&str>) -> Auth {
        let secret = match secret {
            Some(s) => Sha256::digest(s.as_bytes()).into(),
            None => {
                let mut b = [0u8; 32];
                if getrandom::getrandom(&mut b).is_err() {
                    // Without randomness, derive from the hashes and time: still unguessable
                    // enough to not be a fixed key, and tokens only live for this process.
                    let mut h = Sha256::new();
                    for u in &users {
                        h.update(u.password_hash.as_bytes());
                    }
                    h.update(format!("{:?}", SystemTime::now()).as_bytes());
                    b = h.finalize().into();
                }
                b
            }
        };
        Auth {
            users,
            secret,
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            worker: OnceLock::new(),
        }
    }

    fn worker(&self) -> &SyncSender<Job> {
        self.worker.get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(MAX_QUEUED_VERIFICATIONS);
            let spawned = std::thread::Builder::new()
                .name("mjpegd-argon2".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the password-check thread");
            }
            tx
        })
    }

    /// Verifies a user and password without blocking the caller: a recently verified
    /// credential answers at once, anything else queues for the single argon2 thread.
    pub async fn verify(
        self: &Arc<Self>,
        user: String,
        password: String,
    ) -> Result<Option<Principal>, Busy> {
        if let Some(p) = self.cached(&user, &password) {
            return Ok(Some(p));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = Arc::clone(self);
        let job: Job = Box::new(move || {
            let _ = tx.send(me.verify_password(&user, &password));
        });
        self.worker().try_send(job).map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }

    /// An HMAC with the server's secret over `parts`, one after the other.
    fn mac(&self, parts: &[&[u8]]) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).ok()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }

    fn cache_key(&self, user: &str, password: &str) -> Option<[u8; 32]> {
        let mac = self.mac(&[user.as_bytes(), b"\0", password.as_bytes()])?;
        Some(mac.finalize().into_bytes().into())
    }

    fn principal(&self, index: usize) -> Option<Principal> {
        let u = self.users.get(index)?;
        Some(Principal::User {
            name: u.name.clone(),
            cameras: u.cameras.clone(),
            control: u.control,
        })
    }

    fn cached(&self, user: &str, password: &str) -> Option<Principal> {
        let key = self.cache_key(user, password)?;
        // Poison recovered: entries are inserted and removed whole.
        let index = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|(_, at)| at.elapsed() < VERIFIED_TTL)
            .map(|(i, _)| *i)?;
        self.principal(index)
    }

    /// Whether any user is configured (authentication on).
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuses an address that failed too often lately.
    pub fn check_blocked(&self, addr: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = addr else { return Ok(()) };
        // Poison recovered: entries are (count, since) pairs, consistent after any panic.
        // Refusing the lock used to let a blocked address in (this returned Ok).
        let f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match f.get(&ip) {
            Some((n, since)) if *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW => Err(
                Refusal::TooManyFailures(FAILURE_WINDOW.saturating_sub(since.elapsed())),
            ),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt from `addr`.
    pub fn record_failure(&self, addr: Option<IpAddr>) {
        let Some(ip) = addr else { return };
        // Poison recovered: as in `check_blocked`; refusing it used to drop every failure.
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if f.len() >= MAX_TRACKED_ADDRESSES && !f.contains_key(&ip) {
            f.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if f.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(oldest) = f.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    f.remove(&oldest);
                }
            }
        }
        let entry = f.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Addresses currently tracked for failures (for tests and state).
    pub fn tracked_addresses(&self) -> usize {
        // Poison recovered: as in `check_blocked`.
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Verifies a user and password. Runs argon2 (slow by design) unless recently verified:
    /// call it from a blocking thread.
    pub fn verify_password(&self, user: &str, password: &str) -> Option<Principal> {
        if let Some(p) = self.cached(user, password) {
            return Some(p);
        }
        let key = self.cache_key(user, password)?;
        let index = {
            // Verify against every user with that name (normally one) so timing does not
            // reveal whether the name exists: unknown names still cost one argon2 run.
            let found = self.users.iter().position(|u| u.name == user);
            let hash = found.map_or(DUMMY_HASH, |i| self.users[i].password_hash.as_str());
            let ok = PasswordHash::new(hash)
                .map(|h| verify_reusing_memory(&h, password.as_bytes()))
                .unwrap_or(false);
            let i = found.filter(|_| ok)?;
            // Poison recovered: entries are inserted and removed whole.
            let mut v = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if v.len() >= VERIFIED_CACHE {
                v.retain(|_, (_, at)| at.elapsed() < VERIFIED_TTL);
                if v.len() >= VERIFIED_CACHE {
                    v.clear();
                }
            }
            v.insert(key, (i, Instant::now()));
            i
        };
        self.principal(index)
    }

    /// The signature of a session of user `index` until `expires`. The user's password hash is
    /// signed too, so changing a password ends that user's sessions; the leading tag keeps a
    /// session and a camera token from ever verifying as each other.
    fn sign_session(&self, index: usize, expires: u64) -> Option<HmacSha256> {
        let user = self.users.get(index)?;
        self.mac(&[
            b"session\0",
            user.name.as_bytes(),
            b"\0",
            expires.to_string().as_bytes(),
            b"\0",
            user.password_hash.as_bytes(),
        ])
    }

    /// A session for `user` (checked with [`Auth::verify`] first), valid for [`SESSION_TTL`]:
    /// the value of the [`SESSION_COOKIE`].
    pub fn issue_session(&self, user: &str) -> Option<String> {
        let index = self.users.iter().position(|u| u.name == user)?;
        self.session_until(index, now_unix() + SESSION_TTL.as_secs())
    }

    fn session_until(&self, index: usize, expires: u64) -> Option<String> {
        let sig = self.sign_session(index, expires)?.finalize().into_bytes();
        let name = URL_SAFE_NO_PAD.encode(self.users.get(index)?.name.as_bytes());
        Some(format!("{name}.{expires}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Checks a session cookie's value: well-formed, signed by us for a user who still has the
    /// same password, not expired. Returns that user.
    pub fn verify_session(&self, value: &str) -> Result<Principal, &'static str> {
        if value.len() > MAX_TOKEN_LEN {
            return Err("session too long");
        }
        let mut parts = value.split('.');
        let (Some(name), Some(expires), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed session");
        };
        let name = URL_SAFE_NO_PAD
            .decode(name)
            .ok()
            .and_then(|n| String::from_utf8(n).ok())
            .ok_or("malformed session user")?;
        let expires: u64 = expires.parse().map_err(|_| "malformed session expiry")?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| "malformed session signature")?;
        let index = self
            .users
            .iter()
            .position(|u| u.name == name)
            .ok_or("session of an unknown user")?;
        let mac = self
            .sign_session(index, expires)
            .ok_or("cannot check sessions")?;
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| "bad session signature (or the password changed)")?;
        if expires <= now_unix() {
            return Err("session expired");
        }
        self.principal(index).ok_or("session of an unknown user")
    }

    fn sign(&self, camera: &str, expires: u64) -> Option<HmacSha256> {
        self.mac(&[camera.as_bytes(), b"|", expires.to_string().as_bytes()])
    }

    /// Issues a token for `camera` valid for `ttl` (capped at [`MAX_TOKEN_TTL`]); returns it
    /// and its expiry (Unix seconds).
    pub fn issue_token(&self, camera: &str, ttl: Duration) -> Option<(String, u64)> {
        let expires = now_unix() + ttl.min(MAX_TOKEN_TTL).as_secs().max(1);
        let sig = self.sign(camera, expires)?.finalize().into_bytes();
        let token = format!("{camera}.{expires}.{}", URL_SAFE_NO_PAD.encode(sig));
        Some((token, expires))
    }

    /// Checks a token: well-formed, signed by us, not expired. Returns the camera it grants.
    pub fn verify_token(&self, token: &str) -> Result<String, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("token too long");
        }
        let mut parts = token.rsplitn(3, '.');
        let (Some(sig), Some(expires), Some(camera)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed token");
        };
        let expires: u64 = expires.parse().map_err(|_| "malformed token expiry")?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| "malformed token signature")?;
        let mac = self.sign(camera, expires).ok_or("cannot check tokens")?;
        // verify_slice compares in constant time.
        mac.verify_slice(&sig).map_err(|_| "bad token signature")?;
        if expires <= now_unix() {
            return Err("token expired");
        }
        Ok(camera.to_owned())
    }
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept between checks: a
    /// fresh allocation per check was seen to leave its pages resident every time.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks `password` against a PHC hash, reusing this thread's argon2 memory.
fn verify_reusing_memory(hash: &PasswordHash<'_>, password: &[u8]) -> bool {
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => argon2::Version::default(),
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let hashed = ARGON2_MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < blocks {
            m.resize(blocks, argon2::Block::default());
        }
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut m[..blocks])
            .is_ok()
    });
    // `Output` compares in constant time.
    hashed && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// A valid argon2 hash of a random password, verified against when the user name is unknown
/// so that a wrong name costs as much time as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0O3Ajd6QFmkK2MBpHTPbvdXkNYnv5VjUSdOg4j0BWdc";

/// Splits an `Authorization: Basic …` value into user and password.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || rest.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let hash = hash_password("hunter2").expect("hash");
        Auth::new(
            vec![
                User {
                    name: "alice".into(),
                    password_hash: hash.clone(),
                    cameras: None,
                    control: true,
                },
                User {
                    name: "bob".into(),
                    password_hash: hash,
                    cameras: Some(["porch".to_string()].into_iter().collect()),
                    control: true,
                },
            ],
            Some("test secret"),
        )
    }

    #[test]
    fn passwords_and_access() {
        let a = auth();
        let alice = a.verify_password("alice", "hunter2").expect("alice");
        assert!(alice.may_watch("garage") && alice.is_user());
        // Cached path gives the same answer.
        assert_eq!(a.verify_password("alice", "hunter2"), Some(alice));
        assert!(a.verify_password("alice", "hunter3").is_none());
        assert!(a.verify_password("mallory", "hunter2").is_none());
        let bob = a.verify_password("bob", "hunter2").expect("bob");
        assert!(bob.may_watch("porch") && !bob.may_watch("garage"));
        assert!(!Principal::Anonymous.may_watch("porch"));
    }

    #[test]
    fn the_dummy_hash_is_valid() {
        assert!(check_hash(DUMMY_HASH).is_ok());
        assert!(check_hash("plaintext").is_err());
    }

    #[test]
    fn tokens_are_signed_scoped_and_expire() {
        let a = auth();
        let (t, _) = a
            .issue_token("porch", Duration::from_secs(60))
            .expect("token");
        assert_eq!(a.verify_token(&t), Ok("porch".into()));
        let other = Auth::new(vec![], Some("another secret"));
        assert!(other.verify_token(&t).is_err(), "another server's secret");
        let forged = t.replacen("porch", "garage", 1);
        assert_eq!(a.verify_token(&forged), Err("bad token signature"));
        for bad in ["", "x", "a.b.c", "porch.99999999999.AAAA", &"x".repeat(600)] {
            assert!(a.verify_token(bad).is_err(), "{bad}");
        }
        let sig = a.sign("porch", 1).expect("mac").finalize().into_bytes();
        let expired = format!("porch.1.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(a.verify_token(&expired), Err("token expired"));
    }

    #[test]
    fn sessions_are_signed_per_user_and_password_and_expire() {
        let a = auth();
        let s = a.issue_session("bob").expect("session");
        match a.verify_session(&s) {
            Ok(Principal::User { name, cameras, .. }) => {
                assert_eq!(name, "bob");
                assert!(cameras.is_some_and(|c| c.contains("porch")));
            }
            other => panic!("{other:?}"),
        }
        assert!(a.issue_session("mallory").is_none(), "no such user");
        // Another user's name under bob's signature.
        let (_, rest) = s.split_once('.').expect("dots");
        let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode("alice"));
        assert!(a.verify_session(&forged).is_err());
        // The same secret and user, another password: the session is over.
        let mut users = a.users.clone();
        users[1].password_hash = hash_password("changed").expect("hash");
        let changed = Auth::new(users, Some("test secret"));
        assert_eq!(
            changed.verify_session(&s),
            Err("bad session signature (or the password changed)")
        );
        let expired = a.session_until(1, 1).expect("session");
        assert_eq!(a.verify_session(&expired), Err("session expired"));
        // A camera token is not a session, nor a session a token.
        let (token, _) = a.issue_token("porch", Duration::from_secs(60)).expect("t");
        assert!(a.verify_session(&token).is_err());
        assert!(a.verify_token(&s).is_err());
        for bad in ["", "a.b", "a.b.c.d", "YWxpY2U.x.AAAA", &"x".repeat(600)] {
            assert!(a.verify_session(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_block_an_address_and_tracking_is_bounded() {
        let a = Auth::new(vec![], None);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..MAX_FAILURES - 1 {
            a.record_failure(Some(ip));
        }
        assert!(a.check_blocked(Some(ip)).is_ok(), "just under the limit");
        a.record_failure(Some(ip));
        assert!(matches!(
            a.check_blocked(Some(ip)),
            Err(Refusal::TooManyFailures(_))
        ));
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            a.record_failure(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert!(a.tracked_addresses() <= MAX_TRACKED_ADDRESSES);
    }

    /// Issue 11, defect 4: a panic while the failure map was locked used to switch the login
    /// brake off for good (failures dropped, every address let in).
    #[test]
    fn defect_4_poisoned_failure_map_still_blocks() {
        let a = Auth::new(vec![], None);
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = a.failures.lock();
                panic!("a panic while holding the failure map (expected by this test)");
            })
            .join()
        });
        assert!(poisoned.is_err() && a.failures.is_poisoned());
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            a.record_failure(Some(ip));
        }
        assert_eq!(a.tracked_addresses(), 1);
        assert!(matches!(
            a.check_blocked(Some(ip)),
            Err(Refusal::TooManyFailures(_))
        ));
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6aHVudGVyMg=="),
            Some(("alice".into(), "hunter2".into()))
        );
        assert_eq!(parse_basic("Bearer xyz"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), None);
    }
}
