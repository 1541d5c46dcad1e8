//! `[auth]`: users, their passwords and which cameras they may watch.

use std::collections::HashSet;

use serde::Deserialize;

use super::{ConfigError, err};

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Secret that signs URL tokens and login sessions; random per process when absent (they
    /// then die with it).
    pub secret: Option<String>,
    /// How a browser logs in to a page: `"form"` (the default: mjpegd's login page and a
    /// session cookie) or `"basic"` (the browser's own prompt).
    pub login: Option<String>,
    /// The users; none means authentication is off.
    #[serde(default)]
    pub users: Vec<UserSection>,
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: String,
    /// argon2 hash from `mjpegd hash-password`.
    pub password_hash: String,
    /// Cameras the user may watch; all when absent.
    pub cameras: Option<Vec<String>>,
    /// May start/stop recording on those cameras; absent: yes (the behaviour before the key).
    pub control: Option<bool>,
}

/// Whether browsers log in through mjpegd's form (`login = "form"`, the default) rather than
/// their own Basic prompt (`"basic"`).
pub fn login_form(a: &AuthSection) -> Result<bool, ConfigError> {
    match a.login.as_deref() {
        None | Some("form") => Ok(true),
        Some("basic") => Ok(false),
        Some(other) => Err(err(
            "auth.login",
            format!(
                "unknown login {other:?}: use \"form\" (mjpegd's login page) or \"basic\" (the \
                 browser's own prompt)"
            ),
        )),
    }
}

/// Checks `[auth]` against the declared camera names and builds the users.
pub fn check_auth(
    a: &AuthSection,
    cameras: &[String],
) -> Result<Vec<crate::auth::User>, ConfigError> {
    let mut seen = HashSet::new();
    let mut users = Vec::with_capacity(a.users.len());
    for (i, u) in a.users.iter().enumerate() {
        let key = |f: &str| format!("auth.users[{i}].{f}");
        if u.name.is_empty() || u.name.contains(':') || u.name.len() > 128 {
            return Err(err(
                key("name"),
                "a user name is 1 to 128 characters without ':'",
            ));
        }
        if !seen.insert(u.name.clone()) {
            return Err(err(key("name"), format!("duplicate user {:?}", u.name)));
        }
        crate::auth::check_hash(&u.password_hash).map_err(|e| err(key("password_hash"), e))?;
        if let Some(cams) = &u.cameras {
            if let Some(unknown) = cams.iter().find(|c| !cameras.contains(c)) {
                return Err(err(
                    key("cameras"),
                    format!(
                        "no camera named {unknown:?}; cameras: {}",
                        cameras.join(", ")
                    ),
                ));
            }
        }
        users.push(crate::auth::User {
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
            cameras: u.cameras.as_ref().map(|c| c.iter().cloned().collect()),
            control: u.control.unwrap_or(true),
        });
    }
    login_form(a)?;
    if a.secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err(err(
            "auth.secret",
            "use at least 16 characters (or leave it out for a random one)",
        ));
    }
    Ok(users)
}
