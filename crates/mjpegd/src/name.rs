//! The camera name rule: names appear in URL paths and NATS subjects as they are.
//!
//! A leaf (std only), because layers below the hub need it too: a bus URL's camera
//! (`link`, `source::nats`) is checked with the same rule as a configured camera.

/// Longest camera name.
pub const MAX_NAME_LEN: usize = 64;

/// The rule, for error messages.
pub const NAME_RULE: &str = "1 to 64 letters, digits, '-' or '_'";

/// True for names usable in URL paths and NATS subjects as they are.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_url_safe() {
        assert!(valid_name("porch_2-left"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a.b"), "a dot would split a NATS subject");
        assert!(!valid_name("ä"));
        assert!(valid_name(&"x".repeat(64)));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
