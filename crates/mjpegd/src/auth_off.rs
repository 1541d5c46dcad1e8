//! Authentication is not in this build (feature `auth` off): every request is [`Principal::Open`].
//! Users cannot be configured (`--user`, `[[auth.users]]` and `hash-password` say how to get the
//! feature), and should a caller construct an [`Auth`] with users anyway, every request is
//! refused rather than let through.

pub use crate::principal::{Principal, Refusal, User};

/// What configuring users says in a build without authentication.
pub const NOT_BUILT: &str = "this mjpegd was built without the `auth` feature; rebuild with \
    `cargo build --release --features auth` (on by default)";

/// The authentication state of a server: in this build, whether users were (wrongly) given.
#[derive(Debug)]
pub struct Auth {
    refuse_all: bool,
}

impl Auth {
    /// Authentication "with these users": with none, everything is open; with some, this build
    /// cannot check them, so every request will be refused.
    pub fn new(users: Vec<User>, _secret: Option<&str>) -> Auth {
        Auth {
            refuse_all: !users.is_empty(),
        }
    }

    /// Whether requests must be authenticated (then, in this build, they are all refused).
    pub fn enabled(&self) -> bool {
        self.refuse_all
    }
}

/// Why a password cannot be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// This build has no authentication.
    #[error("{}", NOT_BUILT)]
    NotBuilt,
}

// The config parser collects messages as strings; this keeps it a plain `map_err` away.
impl From<AuthError> for String {
    fn from(e: AuthError) -> String {
        e.to_string()
    }
}

/// Refuses: this build cannot hash passwords.
pub fn hash_password(_password: &str) -> Result<String, AuthError> {
    Err(AuthError::NotBuilt)
}

/// Refuses every hash: this build cannot check passwords.
pub fn check_hash(_hash: &str) -> Result<(), AuthError> {
    Err(AuthError::NotBuilt)
}
