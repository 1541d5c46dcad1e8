//! Who is asking, and what they may watch: the policy types that HTTP handlers check, the same
//! whether or not the build has authentication (feature `auth`).

use std::collections::HashSet;
use std::time::Duration;

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// The argon2 PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// Cameras this user may watch; `None` means all.
    pub cameras: Option<HashSet<String>>,
    /// May start/stop recording (and use other controls) on the cameras it may watch.
    pub control: bool,
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off: everything is allowed.
    Open,
    /// No (valid) credentials.
    Anonymous,
    /// A logged-in user.
    User {
        /// Name.
        name: String,
        /// Cameras allowed; `None` for all.
        cameras: Option<HashSet<String>>,
        /// May control (record start/stop) the cameras it may watch.
        control: bool,
    },
    /// A URL token for one camera's stream and snapshot.
    Token {
        /// The camera it was issued for.
        camera: String,
    },
}

impl Principal {
    /// May this principal watch `camera`?
    pub fn may_watch(&self, camera: &str) -> bool {
        match self {
            Principal::Open => true,
            Principal::Anonymous => false,
            Principal::User { cameras, .. } => cameras.as_ref().is_none_or(|c| c.contains(camera)),
            Principal::Token { camera: c } => c == camera,
        }
    }

    /// May this principal control `camera` (start/stop recording)? Watching is required too.
    pub fn may_control(&self, camera: &str) -> bool {
        match self {
            Principal::User { control, .. } => *control && self.may_watch(camera),
            other => matches!(other, Principal::Open),
        }
    }

    /// May this principal see pages, state and other cameras' names (tokens may not)?
    pub fn is_user(&self) -> bool {
        matches!(self, Principal::Open | Principal::User { .. })
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong user or password, or a bad token.
    BadCredentials,
    /// Too many failures from this address: wait this long.
    TooManyFailures(Duration),
}
